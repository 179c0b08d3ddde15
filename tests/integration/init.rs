//! `sprout init` scaffolds a project once and never overwrites.

use crate::util::{TestRepo, stderr_of};

#[test]
fn scaffolds_and_keeps_existing_files() {
    let repo = TestRepo::new();
    repo.write(".gitignore", "target/\n");
    repo.sprout()
        .args(["init", "--path", "k8s/prod"])
        .assert()
        .success();
    let production =
        std::fs::read_to_string(repo.path().join("environments/production.yaml")).unwrap();
    assert!(
        production.contains("path: \"k8s/prod\"")
            && production.contains("ref: \"main\"")
            && production.contains("protected: true")
    );
    for template in [
        "developer.yaml.tera",
        "preview.yaml.tera",
        "branch.yaml.tera",
    ] {
        assert!(
            repo.path().join("templates").join(template).is_file(),
            "{template}"
        );
    }
    repo.write("environments/production.yaml", "# mine\n");
    let output = repo.sprout().arg("init").output().unwrap();
    assert!(output.status.success());
    assert!(stderr_of(&output).contains("kept    environments/production.yaml"));
    assert_eq!(
        std::fs::read_to_string(repo.path().join("environments/production.yaml")).unwrap(),
        "# mine\n"
    );
    let gitignore = std::fs::read_to_string(repo.path().join(".gitignore")).unwrap();
    assert_eq!(gitignore.matches(".sprout/").count(), 1, "{gitignore}");
    assert!(gitignore.starts_with("target/\n"));
}

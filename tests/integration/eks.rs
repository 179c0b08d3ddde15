//! The EKS provider against a local moto server (started by scripts/test), through the real
//! aws-sdk-eks. moto serves the EKS API but no Kubernetes API behind the cluster endpoint, so
//! `up` provisions for real and then stops at the sync stage with an "unreachable" error.

use crate::cluster::unique;
use crate::util::{TestRepo, stderr_of};
use aws_sdk_eks::Client;

fn moto_url() -> String {
    std::env::var("SPROUT_TEST_MOTO_URL").expect(
        "the EKS tests need a moto server: run scripts/test, which starts one and sets SPROUT_TEST_MOTO_URL",
    )
}

const REGION: &str = "eu-west-1";

fn with_aws<'a>(
    cmd: &'a mut assert_cmd::Command,
    home: &std::path::Path,
) -> &'a mut assert_cmd::Command {
    cmd.env("AWS_ENDPOINT_URL", moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home)
}

async fn eks_client() -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto_url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&config)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The cluster as the EKS API describes it; `None` only when it does not exist (any other
/// error fails the test, so an unreachable moto never passes for a deleted cluster).
async fn describe(client: &Client, name: &str) -> Option<aws_sdk_eks::types::Cluster> {
    match client.describe_cluster().name(name).send().await {
        Ok(out) => Some(out.cluster.expect("a described cluster")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!("describe cluster {name}: {e:?}"),
    }
}

async fn node_groups(client: &Client, cluster: &str) -> Vec<String> {
    client
        .list_nodegroups()
        .cluster_name(cluster)
        .send()
        .await
        .unwrap()
        .nodegroups
        .unwrap_or_default()
}

fn eks_project(env: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n")
        .write(
            "environments/production.yaml",
            "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  protected: true\n  source: {ref: main, path: deploy}\n",
        )
        .write(
            &format!("environments/{env}.yaml"),
            &format!(
                "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  from: production\n  cluster:\n    provider: eks\n    \
                 eks:\n      region: {REGION}\n      version: \"1.29\"\n      roleArn: arn:aws:iam::123456789012:role/eks-cluster\n      \
                 subnetIds: [subnet-0a, subnet-0b]\n      nodes: {{type: t3.large, min: 1, max: 3, roleArn: arn:aws:iam::123456789012:role/eks-nodes}}\n"
            ),
        );
    repo.commit("production");
    repo
}

#[test]
fn up_creates_a_tagged_cluster_and_node_group_and_down_deletes_them_in_order() {
    let env = unique("eks");
    let repo = eks_project(&env);
    let home = tempfile::tempdir().unwrap();
    let cluster = format!("sprout-{env}");

    let up = with_aws(&mut repo.sprout(), home.path())
        .args(["up", &env])
        .output()
        .unwrap();
    let stderr = stderr_of(&up);
    assert_eq!(up.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("environment {env}: sync: cluster https://"))
            && stderr.contains("is unreachable"),
        "{stderr}"
    );

    let (tags, groups, group) = block_on(async {
        let client = eks_client().await;
        let described = describe(&client, &cluster)
            .await
            .expect("the cluster exists");
        let groups = node_groups(&client, &cluster).await;
        let group = client
            .describe_nodegroup()
            .cluster_name(&cluster)
            .nodegroup_name("sprout-nodes")
            .send()
            .await
            .unwrap()
            .nodegroup
            .unwrap();
        assert_eq!(described.version.as_deref(), Some("1.29"));
        assert_eq!(
            described.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/eks-cluster")
        );
        (described.tags.unwrap_or_default(), groups, group)
    });
    assert_eq!(tags.get("sprout.dev/environment"), Some(&env));
    assert_eq!(
        tags.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("sprout")
    );
    assert_eq!(groups, ["sprout-nodes"]);
    let scaling = group.scaling_config.unwrap();
    assert_eq!((scaling.min_size, scaling.max_size), (Some(1), Some(3)));
    assert_eq!(group.instance_types.unwrap_or_default(), ["t3.large"]);
    assert_eq!(
        group.node_role.as_deref(),
        Some("arn:aws:iam::123456789012:role/eks-nodes")
    );
    assert_eq!(
        group.tags.unwrap_or_default().get("sprout.dev/environment"),
        Some(&env)
    );

    // The kubeconfig authenticates with a fresh token from `sprout eks-token` on every use.
    let kubeconfig = std::fs::read_to_string(
        repo.path()
            .join(format!(".sprout/clusters/{env}/kubeconfig")),
    )
    .unwrap();
    assert!(
        kubeconfig.contains("client.authentication.k8s.io/v1beta1"),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&format!(
            "- eks-token\n      - --cluster\n      - {cluster}\n      - --region\n      - {REGION}"
        )),
        "{kubeconfig}"
    );

    // moto, like EKS, refuses to delete a cluster that still has node groups: success proves the order.
    let down = with_aws(&mut repo.sprout(), home.path())
        .args(["down", &env])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", stderr_of(&down));
    let gone = block_on(async { describe(&eks_client().await, &cluster).await.is_none() });
    assert!(gone, "the cluster is deleted");
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
}

#[test]
fn a_half_created_cluster_is_finished_and_a_half_deleted_one_is_removed() {
    let env = unique("eks-half");
    let repo = eks_project(&env);
    let home = tempfile::tempdir().unwrap();
    let cluster = format!("sprout-{env}");
    // A run killed after creating the cluster, before its node group.
    let first_arn = block_on(async {
        let out = eks_client()
            .await
            .create_cluster()
            .name(&cluster)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-0a")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.cluster.unwrap().arn.unwrap()
    });
    let up = with_aws(&mut repo.sprout(), home.path())
        .args(["up", &env])
        .output()
        .unwrap();
    assert_eq!(
        up.status.code(),
        Some(1),
        "stops at sync: {}",
        stderr_of(&up)
    );
    let (arn, groups) = block_on(async {
        let client = eks_client().await;
        let arn = describe(&client, &cluster)
            .await
            .expect("the cluster exists")
            .arn
            .unwrap();
        let groups = node_groups(&client, &cluster).await;
        (arn, groups)
    });
    assert_eq!(
        arn, first_arn,
        "the existing cluster is reused, not created again"
    );
    assert_eq!(groups, ["sprout-nodes"], "the missing node group is added");

    // A run killed after deleting the node group, before the cluster.
    block_on(async {
        eks_client()
            .await
            .delete_nodegroup()
            .cluster_name(&cluster)
            .nodegroup_name("sprout-nodes")
            .send()
            .await
            .unwrap();
    });
    with_aws(&mut repo.sprout(), home.path())
        .args(["down", &env])
        .assert()
        .success();
    let gone = block_on(async { describe(&eks_client().await, &cluster).await.is_none() });
    assert!(gone);
}

#[test]
fn eks_token_prints_an_exec_credential() {
    let home = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    let output = with_aws(&mut repo.sprout(), home.path())
        .args(["eks-token", "--cluster", "sprout-x", "--region", REGION])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let credential: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    assert!(
        credential["status"]["token"]
            .as_str()
            .unwrap()
            .starts_with("k8s-aws-v1.")
    );
    assert!(
        credential["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[test]
fn gc_deletes_a_cluster_of_this_project_known_only_by_its_tags_and_reports_another_project_s() {
    let env = unique("eks-lost");
    let repo = eks_project(&env);
    // The project keeps using EKS in the region (another environment), and a short grace.
    let other_spec = std::fs::read_to_string(repo.path().join(format!("environments/{env}.yaml")))
        .unwrap()
        .replace(&format!("name: {env}"), &format!("name: keep-{env}"));
    std::fs::write(
        repo.path().join(format!("environments/keep-{env}.yaml")),
        other_spec,
    )
    .unwrap();
    std::fs::write(repo.path().join("sprout.yaml"), "gracePeriod: 1s\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    let cluster = format!("sprout-{env}");
    let up = with_aws(&mut repo.sprout(), home.path())
        .args(["up", &env])
        .output()
        .unwrap();
    assert_eq!(
        up.status.code(),
        Some(1),
        "stops at sync: {}",
        stderr_of(&up)
    );
    // Its spec, record and files are lost (a laptop wiped): only the cluster's tags remain.
    std::fs::remove_file(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    std::fs::remove_file(repo.path().join(format!(".sprout/envs/{env}.json"))).unwrap();
    std::fs::remove_dir_all(repo.path().join(format!(".sprout/clusters/{env}"))).unwrap();
    // Another project's cluster in the same region.
    let foreign = format!("sprout-{}", unique("eks-foreign"));
    block_on(async {
        eks_client()
            .await
            .create_cluster()
            .name(&foreign)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-0a")
                    .build(),
            )
            .tags("app.kubernetes.io/managed-by", "sprout")
            .tags("sprout.dev/project", "someone-else-1")
            .tags("sprout.dev/environment", "theirs")
            .send()
            .await
            .unwrap();
    });
    let gc = |dry_run: bool| {
        let mut args = vec!["-o", "json", "gc"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = with_aws(&mut repo.sprout(), home.path())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // First seen: kept for the grace period.
    let first = gc(false);
    assert_eq!(first["actions"], serde_json::json!([]), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let planned = gc(true).to_string();
    assert!(
        planned.contains(&format!("eks cluster {cluster}")) && planned.contains("delete-orphan"),
        "{planned}"
    );
    assert!(
        !planned.contains(&format!("\"detail\":\"eks cluster {foreign}")),
        "another project's cluster is never planned for deletion: {planned}"
    );
    let done = gc(false);
    let actions = done["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{done}");
    assert_eq!(actions[0]["outcome"], "done", "{done}");
    block_on(async {
        let client = eks_client().await;
        assert!(
            describe(&client, &cluster).await.is_none(),
            "ours is deleted"
        );
        assert!(
            describe(&client, &foreign).await.is_some(),
            "theirs is only reported"
        );
        client.delete_cluster().name(&foreign).send().await.unwrap();
    });
    assert!(
        done.to_string()
            .contains(&format!("eks cluster {foreign}, project someone-else-1")),
        "{done}"
    );
}

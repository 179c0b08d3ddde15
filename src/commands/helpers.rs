//! Hidden subcommands that other programs run: the EKS credential plugin, and the local control
//! plane for scripts/control-plane (one implementation for the envtest provider and the tests).

use super::{print, runtime};
use crate::cluster::eks_token;
use crate::cluster::envtest::LocalControlPlane;
use crate::error::{Error, Result};
use aws_credential_types::provider::ProvideCredentials;
use std::path::Path;

/// Prints an `ExecCredential` with a fresh token for `cluster`.
pub fn eks_token(cluster: &str, region: &str) -> Result<()> {
    let credential = runtime()?.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| Error::Usage("no AWS credentials are configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| Error::Usage(format!("cannot load AWS credentials: {e}")))?;
        let token = eks_token::presign(&credentials, region, cluster, std::time::SystemTime::now())
            .map_err(Error::Usage)?;
        Ok::<_, Error>(eks_token::exec_credential(&token))
    })?;
    print(&format!("{credential}\n"))
}

pub fn control_plane(action: &str, dir: &Path, audit: bool) -> Result<()> {
    let plane = LocalControlPlane::new(dir);
    match action {
        "start" => {
            runtime()?.block_on(plane.start(audit))?;
            eprintln!(
                "control plane ready (kubeconfig: {})",
                plane.kubeconfig().display()
            );
            Ok(())
        }
        _ => Ok(plane.stop()?),
    }
}

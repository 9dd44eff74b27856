//! A runner image published in an EC2 emulator, for tests that launch
//! through the default image look-up.

use aws_sdk_ec2::error::DisplayErrorContext;

/// Registers a runner image named as the default look-up expects
/// (`sprinters-runner-<image>-<date>`) in the account `client` acts in,
/// made from one of the emulator's stock x86_64 AMIs (Canonical's owner
/// id, as moto lists them). Returns its id.
pub async fn publish_runner_image(
    client: &aws_sdk_ec2::Client,
    image: &str,
) -> Result<String, String> {
    let failed = |call: &str, e: &dyn std::fmt::Display| format!("{call}: {e}");
    let stock = client
        .describe_images()
        .owners("099720109477")
        .send()
        .await
        .map_err(|e| failed("DescribeImages", &DisplayErrorContext(e)))?;
    let base = stock
        .images()
        .iter()
        .find(|i| i.architecture().map(|a| a.as_str()) == Some("x86_64"))
        .and_then(|i| i.image_id())
        .ok_or("the emulator lists no stock x86_64 image")?;
    let builder = client
        .run_instances()
        .image_id(base)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .map_err(|e| failed("RunInstances", &DisplayErrorContext(e)))?;
    let instance = builder
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .ok_or("RunInstances returned no instance")?
        .to_owned();
    let published = client
        .create_image()
        .instance_id(&instance)
        .name(format!("sprinters-runner-{image}-20261101"))
        .send()
        .await
        .map_err(|e| failed("CreateImage", &DisplayErrorContext(e)))?;
    client
        .terminate_instances()
        .instance_ids(instance)
        .send()
        .await
        .map_err(|e| failed("TerminateInstances", &DisplayErrorContext(e)))?;
    published
        .image_id()
        .map(str::to_owned)
        .ok_or_else(|| "CreateImage returned no image id".to_owned())
}

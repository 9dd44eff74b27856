//! `sprinters policy iam|trust|cloudformation` and `sprinters user-data`:
//! the documents of the AWS side, printed for a customer or a reviewer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use sprinters_aws::policy::{cloudformation_template, iam_policy, trust_policy};
use sprinters_aws::user_data::{RunnerLayout, boot_script};
use sprinters_core::domain::AccountId;
use sprinters_core::labels::LabelParser;

use super::usage_error as fail;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// The IAM policy of the role in the customer's account.
    Iam,
    /// The trust policy that lets the platform assume that role.
    Trust {
        /// The platform's AWS account id.
        #[arg(long)]
        platform_account: String,
        /// The role the control plane runs as there: the one principal
        /// the customer's role trusts.
        #[arg(long, default_value = sprinters_aws::policy::PLATFORM_ROLE_NAME)]
        platform_role: String,
        /// The external id agreed with the customer.
        #[arg(long)]
        external_id: String,
    },
    /// A CloudFormation template that creates the role and its policy.
    Cloudformation,
}

/// Arguments of `sprinters user-data`.
#[derive(Debug, Args)]
pub(crate) struct UserDataArgs {
    /// A file holding the runner's encoded JIT config (never an argument).
    #[arg(long)]
    jit_config_file: PathBuf,
    /// The job's Sprinters label.
    #[arg(default_value = "sprinters:aws:ubuntu-latest")]
    label: String,
    /// The watchdog's maximum lifetime, in minutes.
    #[arg(long, default_value_t = 375)]
    max_lifetime_minutes: u64,
}

fn print_json(value: &serde_json::Value) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Iam => print_json(&iam_policy()),
        PolicyCommand::Cloudformation => print_json(&cloudformation_template()),
        PolicyCommand::Trust {
            platform_account,
            platform_role,
            external_id,
        } => {
            let account = match AccountId::parse(&platform_account) {
                Ok(a) => a,
                Err(e) => return fail(format!("--platform-account: {e}")),
            };
            match trust_policy(&account, &platform_role, &external_id) {
                Ok(policy) => print_json(&policy),
                Err(e) => fail(e.message()),
            }
        }
    }
}

pub(crate) fn user_data(args: UserDataArgs) -> ExitCode {
    let spec = match LabelParser::default().parse_label(&args.label) {
        Ok(spec) => spec,
        Err(e) => return fail(format!("invalid label `{}`: {e}", e.label())),
    };
    let jit = match std::fs::read_to_string(&args.jit_config_file) {
        Ok(text) => SecretString::from(text.trim().to_owned()),
        Err(e) => {
            return fail(format!(
                "cannot read {}: {e}",
                args.jit_config_file.display()
            ));
        }
    };
    let lifetime = Duration::from_secs(args.max_lifetime_minutes.saturating_mul(60));
    match boot_script(&spec, &jit, lifetime, &RunnerLayout::default()) {
        Ok(script) => {
            print!("{}", script.expose_secret());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message()),
    }
}

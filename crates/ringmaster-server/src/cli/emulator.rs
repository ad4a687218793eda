//! `ringmaster emulator`: a local Telnyx Call Control emulator with signed webhooks.

use anyhow::Context as _;
use clap::Args;
use ringmaster_telnyx::emulator::{Emulator, EmulatorConfig};
use ringmaster_telnyx::WebhookSigner;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONTROL_API_HELP: &str = "\
TELNYX API (as Telnyx serves it; any non-empty bearer key unless --api-key is set):
  POST /v2/calls                                     dial (connection_id, to, from, timeout_secs,
                                                     client_state, command_id, link_to, ...)
  POST /v2/calls/{call_control_id}/actions/{action}  answer, bridge, hangup, reject, transfer,
                                                     record_start, speak, playback_start
  GET  /v2/calls/{call_control_id}                   call status
  Success: {\"data\":{...}}. Errors: {\"errors\":[{code,title,detail}]}, e.g. 90015 (unknown
  call_control_id), 90018 (call already ended), 90034 (not answered yet). A repeated command_id
  for the same call within 60 s returns the first result and does nothing.

WEBHOOKS: POSTed to --webhook-url with telnyx-signature-ed25519 (Ed25519 over
  \"{telnyx-timestamp}|{body}\") and telnyx-timestamp headers: call.initiated, call.answered,
  call.bridged (both legs), call.hangup, call.speak.*, call.playback.*, call.recording.saved.
  Failed deliveries (5xx, 408, 429, network) are retried with meta.attempt incremented.

CONTROL API (JSON; errors are {\"error\":{code,message}}):
  POST   /_emulator/calls {\"from\":\"+1555...\",\"to\":\"+1555...\"}
             an inbound PSTN call arrives; returns call_control_id, call_leg_id, call_session_id
  POST   /_emulator/endpoints {\"to\":\"sip:alice@example.com\",\"script\":S}
             how a number or SIP URI behaves when dialled from now on; S is one of
             \"ring\" (default), {\"answer_after_ms\":N}, {\"reject_after_ms\":N}, \"busy\",
             \"unreachable\". A ringing leg hangs up with cause timeout after its timeout_secs.
  POST   /_emulator/calls/{id}/answer      the device on a ringing dialled leg answers now
  POST   /_emulator/calls/{id}/reject      ... rejects now; body {\"cause\":\"call_rejected\"|\"user_busy\"}
  POST   /_emulator/calls/{id}/hangup      the far end hangs up now (caller: originator_cancel
                                           before answer, normal_clearing after)
  GET    /_emulator/calls[/{id}]           legs and their state
  POST   /_emulator/faults {\"duplicate_next\":N, \"reorder_next\":N, \"delay_ms\":MS,
                            \"fail_next\":{\"count\":N,\"status\":503|429|5xx,\"retry_after\":\"1\"}}
             duplicate the next N webhooks, deliver the next N in reverse order, delay every
             webhook, fail the next N /v2 commands (nothing is executed for them)
  GET    /_emulator/faults                 faults in force
  GET    /_emulator/log                    every command received (action, call_control_id,
                                           command_id, body, status, outcome) and every webhook
                                           delivery attempt, in order; DELETE clears it
  GET    /_emulator/public_key             the webhook signing public key (base64)
  GET    /_emulator/recordings/{id}.wav    a saved recording (silence of the recorded length)

KEYS: --signing-key-file holds a base64 Ed25519 secret (32-byte seed or 64-byte seed+public).
  --public-key-file: if the file exists it must hold the matching base64 public key; if it does
  not exist the public key is written to it. Without --signing-key-file a fresh key is generated.";

/// Options of `ringmaster emulator`.
#[derive(Args, Debug)]
#[command(after_long_help = CONTROL_API_HELP)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Where to POST signed webhooks, e.g. http://127.0.0.1:8080/webhooks/telnyx.
    #[arg(long)]
    pub webhook_url: String,
    /// File with the webhook public key (base64): checked if present, written if absent.
    #[arg(long)]
    pub public_key_file: Option<PathBuf>,
    /// File with the webhook signing key (base64 seed or seed+public).
    #[arg(long)]
    pub signing_key_file: Option<PathBuf>,
    /// Require this API key (Authorization: Bearer) instead of accepting any.
    #[arg(long, env = "RINGMASTER_EMULATOR_API_KEY")]
    pub api_key: Option<String>,
    /// connection_id reported for inbound calls.
    #[arg(long, default_value = "ringmaster-emulator")]
    pub connection_id: String,
    /// Milliseconds one Telnyx second lasts (scales dial timeout_secs; lower it for fast tests).
    #[arg(long, default_value_t = 1000)]
    pub second_ms: u64,
}

/// Loads or generates the signing key and reconciles it with the public key file.
fn signer(args: &EmulatorArgs) -> anyhow::Result<WebhookSigner> {
    let signer = match &args.signing_key_file {
        Some(path) => {
            let text = read_key(path)?;
            WebhookSigner::from_base64(&text)
                .with_context(|| format!("signing key in {}", path.display()))?
        }
        None => WebhookSigner::generate(),
    };
    if let Some(path) = &args.public_key_file {
        if path.exists() {
            let expected = read_key(path)?;
            anyhow::ensure!(
                expected == signer.public_key_b64(),
                "{} holds {expected}, which is not the public key of the signing key",
                path.display()
            );
        } else {
            std::fs::write(path, format!("{}\n", signer.public_key_b64()))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(signer)
}

fn read_key(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Runs the emulator until Ctrl-C.
pub fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.second_ms > 0, "--second-ms must be positive");
    let mut config = EmulatorConfig::new(args.listen, Some(args.webhook_url.clone()));
    config.signing_key = Some(signer(&args)?);
    config.api_key = args.api_key.clone();
    config.connection_id = args.connection_id.clone();
    config.telnyx_second = Duration::from_millis(args.second_ms);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let emulator = Emulator::start(config).await?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "telnyx emulator listening on http://{}",
            emulator.addr()
        )?;
        writeln!(out, "rest api base url: {}", emulator.base_url())?;
        writeln!(out, "control api: {}", emulator.control_url())?;
        writeln!(out, "webhooks to: {}", args.webhook_url)?;
        writeln!(out, "public key: {}", emulator.public_key_b64())?;
        out.flush()?;
        drop(out);
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        tracing::info!("emulator stopping");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(extra: &[&str]) -> EmulatorArgs {
        let mut argv = vec!["emulator", "--webhook-url", "http://127.0.0.1:1/hook"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ringmaster-emulator-cli-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn signing_key_file_fixes_the_key_and_writes_the_public_key() {
        let dir = temp_dir("write");
        let secret = dir.join("secret");
        let public = dir.join("public");
        // The Java SDK's test seed and its public key.
        std::fs::write(&secret, "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=\n").unwrap();
        let args = parse(&[
            "--signing-key-file",
            secret.to_str().unwrap(),
            "--public-key-file",
            public.to_str().unwrap(),
        ]);
        let signer = signer(&args).unwrap();
        assert_eq!(
            signer.public_key_b64(),
            "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs="
        );
        assert_eq!(read_key(&public).unwrap(), signer.public_key_b64());
        // A second start with both files present accepts the matching pair.
        assert!(super::signer(&args).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mismatched_public_key_file_is_an_error() {
        let dir = temp_dir("mismatch");
        let secret = dir.join("secret");
        let public = dir.join("public");
        std::fs::write(&secret, "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=").unwrap();
        std::fs::write(&public, "+7E99DXiiQXvceNX4nHm3Lbm5mqPWad5RhDr2ufuCik=").unwrap();
        let args = parse(&[
            "--signing-key-file",
            secret.to_str().unwrap(),
            "--public-key-file",
            public.to_str().unwrap(),
        ]);
        let err = signer(&args).unwrap_err().to_string();
        assert!(err.contains("not the public key"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_signing_key_is_an_error() {
        let dir = temp_dir("bad");
        let secret = dir.join("secret");
        std::fs::write(&secret, "bm90IGEga2V5").unwrap();
        let args = parse(&["--signing-key-file", secret.to_str().unwrap()]);
        assert!(signer(&args).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn defaults_and_help_document_the_control_api() {
        let args = parse(&[]);
        assert_eq!(args.listen, "127.0.0.1:8090".parse().unwrap());
        assert_eq!(args.second_ms, 1000);
        for needle in [
            "/_emulator/calls",
            "/_emulator/faults",
            "/_emulator/log",
            "answer_after_ms",
        ] {
            assert!(CONTROL_API_HELP.contains(needle), "{needle}");
        }
    }
}

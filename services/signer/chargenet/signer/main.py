"""``chargenet-signer`` / ``python -m chargenet.signer.main``: run the signer until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from chargenet.core import logging as core_logging
from chargenet.core.http import http_server, ops_app
from chargenet.core.settings import ConfigurationError, exit_on_configuration_error, load_settings
from chargenet.signer.abi import AbiError
from chargenet.signer.app import SignerApp
from chargenet.signer.keys import KeyConfigurationError
from chargenet.signer.policy import PolicyConfigurationError
from chargenet.signer.settings import SignerSettings

log = logging.getLogger("chargenet.signer")


async def run(settings: SignerSettings) -> None:
    app = SignerApp(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await app.start()
    # /healthz, /readyz and /metrics over HTTP, beside the gRPC health service.
    ops = http_server(
        ops_app("chargenet signer", {"engine": app.check}), settings.http_host, settings.http_port
    )
    ops_task = asyncio.create_task(ops.serve())
    # Tests and supervisors read this line to learn the port (the settings may ask for port 0).
    print(f"signer ready on port {app.port}", flush=True)
    await stopping.wait()
    log.info("signer stopping")
    ops.should_exit = True
    await app.stop()
    await ops_task


def main() -> None:
    try:
        settings = load_settings(SignerSettings)
    except ConfigurationError as error:
        exit_on_configuration_error(error)
        return
    core_logging.configure(settings.log_level, json_lines=settings.log_json, service="signer")
    # httpx logs every JSON-RPC request at INFO: thousands of lines a second under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(run(settings))
    except (KeyConfigurationError, PolicyConfigurationError, AbiError, OSError) as error:
        # OSError: a TLS file that cannot be read, an address that cannot be listened on.
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

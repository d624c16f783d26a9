"""The distributed stack on one machine: each service its own process (``chargenet run <service>``)
against real Kafka, PostgreSQL and an Ethereum JSON-RPC node, the gateway as replicas.

``up`` deploys fresh contracts, creates one database per service, picks a fresh Kafka topic prefix,
starts the processes (signer first: the others need it), waits until every ``/readyz`` answers and
writes ``state.json`` (endpoints, addresses, keys: mode 0600) under the run directory; the pid and
log of each process sit beside it. ``down`` stops what ``state.json`` names, checking each pid's
command line first so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from web3.types import Wei

from chargenet.cli.network.embedded import Endpoints
from chargenet.cli.network.plan import (
    Cpo,
    Plan,
    Ports,
    demo_cpos,
    environment,
    fresh_keys,
    fresh_tokens,
)
from chargenet.cli.network.tls import issue_certificates
from chargenet.core.chain import connect, deploy_chargenet, richest_account

SERVICES = ("signer", "registry", "wallet", "escrow", "invoicing")
#: Ether each service key gets (gas for a long benchmark: a 300-session run spends well under 1).
KEY_FUNDING_WEI = 10 * 10**18


class SupervisorError(RuntimeError):
    """The stack could not be started or stopped; the message says why (and where the log is)."""


class PortsBusy(SupervisorError):
    """Some port the stack would listen on is taken."""


def ports_in_use(ports: Ports, cpo_count: int, replicas: int) -> list[int]:
    """The stack's ports (services, signer, every gateway replica's WebSocket and ops port) that
    something already listens on."""
    wanted = [
        ports.wallet,
        ports.registry,
        ports.escrow,
        ports.invoicing,
        ports.signer,
        ports.signer_ops,
        *(p for c in range(cpo_count) for r in range(replicas) for p in ports.gateway(c, r)),
    ]
    busy = []
    for port in wanted:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the services' own listeners do: connections of a stack that just stopped
            # (TIME_WAIT) do not make its ports busy, a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "scripts" / "components" / "components.sh").exists():
            return parent
    return Path.cwd()


def default_run_dir() -> Path:
    base = os.environ.get("CHARGENET_RUN_DIR")
    return (Path(base) if base else repo_root() / ".run") / "network"


@dataclass(frozen=True)
class Components:
    kafka: str
    postgres_url: str
    rpc_url: str

    @classmethod
    def from_env(cls) -> Components | None:
        """The ``CHARGENET_TEST_*`` variables that ``components.sh env`` prints, if all are set."""
        names = ("KAFKA", "POSTGRES_URL", "RPC_URL")
        values = [os.environ.get(f"CHARGENET_TEST_{name}") for name in names]
        if not all(values):
            return None
        kafka, postgres, rpc = (str(v) for v in values)
        return cls(kafka, postgres, rpc)


def start_components(out: Callable[[str], None]) -> Components:
    """``components.sh up`` (a no-op when they already run), then its ``env``."""
    script = repo_root() / "scripts" / "components" / "components.sh"
    out("starting Kafka, PostgreSQL and the Hardhat node (scripts/components/components.sh up)")
    done = subprocess.run([str(script), "up"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise SupervisorError(f"components.sh up failed:\n{output}")
    env = subprocess.run([str(script), "env"], capture_output=True, text=True, check=True).stdout
    values = {}
    for line in env.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = value.strip("'\"")
    return Components(
        values["CHARGENET_TEST_KAFKA"],
        values["CHARGENET_TEST_POSTGRES_URL"],
        values["CHARGENET_TEST_RPC_URL"],
    )


@dataclass
class Stack:
    """A running (or recorded) distributed stack, as ``state.json`` describes it."""

    run_dir: Path
    endpoints: Endpoints
    contracts: dict[str, str]
    first_block: int
    rpc_url: str
    jwt_secret: str
    meter_seed: str
    cpo_addresses: dict[str, str]
    processes: dict[str, dict[str, Any]]
    cpos: tuple[Cpo, ...]
    kafka: str = ""
    topic_prefix: str = ""

    @classmethod
    def load(cls, run_dir: Path) -> Stack:
        path = run_dir / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SupervisorError(f"no stack recorded in {path} (run `chargenet up`)") from None
        stations = int(data.get("stations", 3))
        return cls(
            run_dir=run_dir,
            endpoints=Endpoints.from_json(data["endpoints"]),
            contracts=data["contracts"],
            first_block=int(data["first_block"]),
            rpc_url=data["rpc_url"],
            jwt_secret=data["jwt_secret"],
            meter_seed=data["meter_seed"],
            cpo_addresses=data["cpo_addresses"],
            processes=data["processes"],
            cpos=demo_cpos(stations=stations, spare=int(data.get("spare", 0))),
            kafka=data.get("kafka", ""),
            topic_prefix=data.get("topic_prefix", ""),
        )


def _alive(pid: int) -> bool:
    """The process lives and is still one of ours (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"chargenet" in cmdline


def _databases(postgres_url: str, prefix: str) -> dict[str, str]:
    """A fresh database per service (dropped first: the contracts are new, so is the state)."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    base = sa.make_url(postgres_url)
    urls = {}
    try:
        with admin.connect() as connection:
            for service in SERVICES:
                name = f"{prefix}_{service}"
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                urls[service] = base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.dispose()
    return urls


def up(
    components: Components,
    *,
    run_dir: Path | None = None,
    ports: Ports | None = None,
    replicas: int = 2,
    stations: int = 3,
    spare: int = 0,
    database_prefix: str = "chargenet",
    out: Callable[[str], None] = print,
    ready_timeout: float = 180.0,
    log_level: str = "WARNING",
) -> Stack:
    from chargenet.cli.network.embedded import gateway_credentials

    run_dir = run_dir or default_run_dir()
    with contextlib.suppress(SupervisorError):
        running = Stack.load(run_dir)
        if any(_alive(int(p["pid"])) for p in running.processes.values()):
            raise SupervisorError(f"a stack already runs from {run_dir} (`chargenet down` first)")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    ports = ports or Ports()
    cpos = demo_cpos(stations=stations, spare=spare)
    busy = ports_in_use(ports, len(cpos), replicas)
    if busy:
        # A service that cannot bind exits, and readiness would then be answered by whatever
        # holds the port (another stack, with other keys): fail here, naming the ports.
        raise PortsBusy(f"ports already in use: {', '.join(map(str, busy))} (--port-offset)")

    w3 = connect(components.rpc_url)
    admin = richest_account(w3)
    keys = fresh_keys(cpos)
    plan = Plan(
        cpos=cpos,
        keys=keys,
        tokens=fresh_tokens(),
        ports=ports,
        rpc_url=components.rpc_url,
        databases=_databases(components.postgres_url, database_prefix),
        kafka=components.kafka,
        topic_prefix=f"cn{int(time.time())}.",
        meter_seed="chargenet-demo",
        replicas=replicas,
        suppliers_file=str(run_dir / "suppliers.json"),
        jwt_secret=fresh_tokens()["wallet"] + fresh_tokens()["wallet"],
        log_level=log_level,
        signer_tls=run_dir / "tls",
    )
    # The signer over TLS, as in production: this stack's own throwaway CA and certificate.
    issue_certificates(run_dir / "tls", {"signer": ["127.0.0.1", "localhost"]})
    plan.first_block = int(w3.eth.block_number)
    deployment = deploy_chargenet(w3, admin=admin, minter=plan.address_of("minter"))
    plan.contracts = {
        "ChargeToken": deployment.token.address,
        "ChargingEscrow": deployment.escrow.address,
        "StationRegistry": deployment.registry.address,
    }
    for alias in keys:
        w3.eth.send_transaction(
            {"from": admin, "to": plan.address_of(alias), "value": Wei(KEY_FUNDING_WEI)}
        )
    out(f"contracts deployed on chain {w3.eth.chain_id}: {plan.contracts}")
    Path(plan.suppliers_file or "").write_text(json.dumps(plan.suppliers(), indent=2))

    signer_url = f"127.0.0.1:{ports.signer}"
    registry_url = f"http://127.0.0.1:{ports.registry}"
    credentials = gateway_credentials(plan)
    launches: list[tuple[str, str, dict[str, Any], int]] = [
        ("signer", "signer", plan.signer(signer_url), ports.signer_ops),
        ("registry", "registry", plan.registry(signer_url), ports.registry),
        ("wallet", "wallet", plan.wallet(signer_url, registry_url), ports.wallet),
        ("escrow", "escrow", plan.escrow(signer_url), ports.escrow),
        ("invoicing", "invoicing", plan.invoicing(), ports.invoicing),
    ]
    gateways: dict[str, list[str]] = {}
    for index, cpo in enumerate(cpos):
        for replica in range(replicas):
            fields = plan.gateway(index, replica, credentials[cpo.cpo_id])
            name = f"gateway-{cpo.cpo_id}-r{replica + 1}"
            launches.append((name, "gateway", fields, int(fields["http_port"])))
            gateways.setdefault(cpo.cpo_id, []).append(f"ws://127.0.0.1:{fields['ws_port']}/ocpp")

    processes: dict[str, dict[str, Any]] = {}
    stack = Stack(
        run_dir=run_dir,
        endpoints=Endpoints(
            wallet=f"http://127.0.0.1:{ports.wallet}",
            registry=registry_url,
            invoicing=f"http://127.0.0.1:{ports.invoicing}",
            escrow=f"http://127.0.0.1:{ports.escrow}",
            gateways=gateways,
            metrics={name: f"http://127.0.0.1:{port}/metrics" for name, _s, _f, port in launches},
        ),
        contracts=plan.contracts,
        first_block=plan.first_block,
        rpc_url=components.rpc_url,
        jwt_secret=plan.jwt_secret,
        meter_seed=plan.meter_seed,
        cpo_addresses={c.cpo_id: plan.address_of(c.key_alias) for c in cpos},
        processes=processes,
        cpos=cpos,
        kafka=components.kafka,
        topic_prefix=plan.topic_prefix,
    )
    try:
        # The signer first: every other service dials it at start.
        _launch(run_dir, launches[0], processes)
        _save(stack, stations, spare)
        _wait_ready(run_dir, launches[:1], processes, ready_timeout)
        for launch in launches[1:]:
            _launch(run_dir, launch, processes)
        _save(stack, stations, spare)
        _wait_ready(run_dir, launches[1:], processes, ready_timeout)
    except BaseException:
        down(run_dir, out=lambda _text: None)
        raise
    out(f"{len(processes)} processes ready; state in {run_dir / 'state.json'}")
    return stack


#: The processes this interpreter launched, by pid: ``down`` in the same interpreter (a test, the
#: bench, a failed start) reaps them, so none is left a zombie or dropped while it runs.
#: ``chargenet up`` exits and leaves its services to the init process.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _launch(
    run_dir: Path,
    launch: tuple[str, str, dict[str, Any], int],
    processes: dict[str, dict[str, Any]],
) -> None:
    name, service, fields, port = launch
    env = {
        **os.environ,
        **environment({**fields, "log_json": False}),
        "PYTHONUNBUFFERED": "1",
    }
    log = run_dir / "logs" / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "chargenet.cli.main", "run", service],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=repo_root(),
        )
    _children[process.pid] = process
    (run_dir / f"{name}.pid").write_text(str(process.pid))
    processes[name] = {"pid": process.pid, "service": service, "log": str(log), "http_port": port}


def _wait_ready(
    run_dir: Path,
    launches: list[tuple[str, str, dict[str, Any], int]],
    processes: dict[str, dict[str, Any]],
    timeout: float,
) -> None:
    waiting = {name: port for name, _service, _fields, port in launches}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while waiting:
            for name, port in list(waiting.items()):
                if not _alive(int(processes[name]["pid"])):
                    raise SupervisorError(f"{name} exited while starting:\n{_tail(run_dir, name)}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        del waiting[name]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(waiting)
                log = _tail(run_dir, next(iter(waiting)))
                raise SupervisorError(f"not ready after {timeout:.0f} s: {names}\n{log}")
            time.sleep(0.2)


def _tail(run_dir: Path, name: str, lines: int = 30) -> str:
    try:
        text = (run_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])


def _save(stack: Stack, stations: int, spare: int) -> None:
    data = {
        "endpoints": stack.endpoints.to_json(),
        "contracts": stack.contracts,
        "first_block": stack.first_block,
        "rpc_url": stack.rpc_url,
        "jwt_secret": stack.jwt_secret,
        "meter_seed": stack.meter_seed,
        "cpo_addresses": stack.cpo_addresses,
        "processes": stack.processes,
        "stations": stations,
        "spare": spare,
        "kafka": stack.kafka,
        "topic_prefix": stack.topic_prefix,
    }
    path = stack.run_dir / "state.json"
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def down(
    run_dir: Path | None = None, *, timeout: float = 20.0, out: Callable[[str], None] = print
) -> int:
    """Stop every recorded process: TERM, then KILL after ``timeout``. Returns how many ran."""
    run_dir = run_dir or default_run_dir()
    try:
        stack = Stack.load(run_dir)
    except SupervisorError:
        out(f"nothing to stop: no stack recorded in {run_dir}")
        return 0
    running = {
        name: int(info["pid"]) for name, info in stack.processes.items() if _alive(int(info["pid"]))
    }
    for pid in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in running.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in running.items():
        if _alive(pid):
            out(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f} s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            (run_dir / f"{name}.pid").unlink()
    for info in stack.processes.values():  # also those that had exited on their own
        if (child := _children.pop(int(info["pid"]), None)) is not None:
            child.wait()
    out(f"stopped {len(running)} processes (logs kept in {run_dir / 'logs'})")
    return len(running)

"""The committed generated code must match the .proto: regenerate and compare byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chargenet.core.signer_client._generated import signer_pb2, signer_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "libs/core/chargenet/core/signer_client/_generated"


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts/gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in GENERATED.iterdir() if p.is_file())
    stale = [n for n in fresh if (tmp_path / n).read_bytes() != (GENERATED / n).read_bytes()]
    assert not stale, f"run scripts/gen_proto.sh: {stale} differ from the .proto"


def test_service_shape_follows_buf_style() -> None:
    service = signer_pb2.DESCRIPTOR.services_by_name["SignerService"]
    assert signer_pb2.DESCRIPTOR.package == "chargenet.signer.v1"
    assert signer_pb2.DESCRIPTOR.name == "chargenet/signer/v1/signer.proto"
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    for enum in signer_pb2.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values[0].number == 0
        assert enum.values[0].name.endswith("_UNSPECIFIED")
    assert hasattr(signer_pb2_grpc, "SignerServiceStub")

"""Throwaway certificates for a stack on one machine: a CA, and certificates it signed.

``chargenet up`` serves the signer over TLS with these, as production does with the operator's
own (cert-manager's, the chart's ``signer.tls.secret``), so the stack runs the same channel.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Long enough for any stack or test, short enough that a leaked one soon means nothing.
VALID_FOR = dt.timedelta(days=30)


def issue_certificates(folder: Path, names: Mapping[str, Sequence[str]]) -> None:
    """``ca.crt``/``ca.key`` and, for each name, ``<name>.crt``/``<name>.key`` signed by that CA
    for its host names and IP addresses, written to ``folder`` (keys readable by the owner only).
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("chargenet development CA")
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder / "ca", ca_key, ca)
    for name, hosts in names.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(_name(name), ca_name, key, now)
            .add_extension(x509.SubjectAlternativeName([_host(h) for h in hosts]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(folder / name, key, cert)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _host(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(stem: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    stem.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = stem.with_suffix(".key")
    key_file.touch(mode=0o600, exist_ok=True)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

"""Mutual TLS for the cluster's Dask: a CA made at `cluster up`, one certificate it signs, and the
`Security` every scheduler, worker and client loads from those files.

The CA's private key is thrown away once it has signed: nobody, not even the owner, can mint another
certificate this cluster accepts. Scheduler, workers and clients all present the one certificate and
require the other side's (distributed sets `CERT_REQUIRED` both ways), so a client without the key
file cannot even finish the handshake. Every file is 0600 in a 0700 directory; `cluster down` removes it.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from pathlib import Path

from .settings import write_private

FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
VALID_DAYS = 365


def tls_files(directory: str | Path) -> dict[str, Path]:
    return {role: Path(directory) / name for role, name in FILES.items()}


def make_tls(directory: str | Path) -> dict[str, Path]:
    """Write a fresh CA certificate, and a certificate + key it signed, to `directory`; returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conductor cluster CA")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conductor-dask")])
    cert = (_builder(name, ca_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("dask-internal"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tls_files(directory)
    pem = serialization.Encoding.PEM
    write_private(paths["key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode())
    write_private(paths["cert"], cert.public_bytes(pem).decode())
    write_private(paths["ca"], ca.public_bytes(pem).decode())
    return paths


def _builder(subject, issuer, public_key, now):
    from cryptography import x509

    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def tls_flags(directory: str | Path) -> list[str]:
    """`dask scheduler` / `dask worker` arguments that make it listen and connect with these files only."""
    p = tls_files(directory)
    return ["--tls-ca-file", str(p["ca"]), "--tls-cert", str(p["cert"]), "--tls-key", str(p["key"])]


def security(directory: str | Path | None = None):
    """The client side: these files (or, with no directory, dask's own `distributed.comm.tls.*` settings,
    e.g. from DASK_DISTRIBUTED__COMM__TLS__* on Kubernetes), encryption required."""
    from distributed.security import Security

    if directory is None:
        return Security(require_encryption=True)
    p = tls_files(directory)
    missing = [str(f) for f in p.values() if not f.is_file()]
    if missing:
        from .settings import SettingsError

        raise SettingsError(f"CONDUCTOR_DASK_TLS: {', '.join(missing)} missing; is the cluster up? "
                            "(`conductor cluster down` and `conductor cluster up` make new ones)")
    files = {"tls_ca_file": str(p["ca"])}
    for role in ("client", "scheduler", "worker"):
        files.update({f"tls_{role}_cert": str(p["cert"]), f"tls_{role}_key": str(p["key"])})
    return Security(require_encryption=True, **files)


def remove_tls(directory: str | Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)

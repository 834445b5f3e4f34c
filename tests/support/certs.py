"""Real certificates made by the real ``openssl``: a CA, a server certificate for 127.0.0.1 /
localhost, a client certificate, an expired server certificate, a second CA nobody trusts and
a client certificate it signed. Made once per session (a few RSA keys take a second)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    other_ca: Path
    stranger_cert: Path  # a client certificate signed by other_ca
    stranger_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.name,
        "-out",
        cert.name,
        "-days",
        "30",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return cert, key


def _leaf(
    directory: Path, name: str, ca: tuple[Path, Path], server: bool, expired: bool = False
) -> tuple[Path, Path]:
    key, csr, cert = (
        directory / f"{name}.key",
        directory / f"{name}.csr",
        directory / f"{name}.crt",
    )
    ext = directory / f"{name}.ext"
    if server:
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
    else:
        ext.write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.name,
        "-out",
        csr.name,
        "-subj",
        f"/CN={name}",
        cwd=directory,
    )
    if expired:  # valid from 3 days ago to yesterday: x509 -days cannot make that
        conf = directory / f"{name}-ca.conf"
        db = directory / f"{name}-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        conf.write_text(f"""[ca]
default_ca = mini
[mini]
dir = {db}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
default_md = sha256
policy = anything
copy_extensions = none
[anything]
commonName = supplied
""")
        _run(
            "ca",
            "-batch",
            "-config",
            conf.name,
            "-cert",
            ca[0].name,
            "-keyfile",
            ca[1].name,
            "-in",
            csr.name,
            "-out",
            cert.name,
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extfile",
            ext.name,
            "-notext",
            cwd=directory,
        )
    else:
        _run(
            "x509",
            "-req",
            "-in",
            csr.name,
            "-CA",
            ca[0].name,
            "-CAkey",
            ca[1].name,
            "-CAcreateserial",
            "-out",
            cert.name,
            "-days",
            "30",
            "-extfile",
            ext.name,
            cwd=directory,
        )
    return cert, key


def make_certs(directory: Path) -> Certs:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    other = _ca(directory, "other-ca")
    server = _leaf(directory, "server", ca, server=True)
    client = _leaf(directory, "client", ca, server=False)
    expired = _leaf(directory, "expired", ca, server=True, expired=True)
    stranger = _leaf(directory, "stranger", other, server=False)
    return Certs(
        directory,
        ca[0],
        server[0],
        server[1],
        client[0],
        client[1],
        expired[0],
        expired[1],
        other[0],
        stranger[0],
        stranger[1],
    )


def new_server_cert(certs: Certs, name: str) -> tuple[Path, Path]:
    """Another server certificate from the same CA (for rotation tests)."""
    return _leaf(certs.dir, name, (certs.ca, certs.dir / "ca.key"), server=True)

#!/usr/bin/env python3
"""The secrets of docker-compose.yml, made at the stack's first start (service "tls-init").

Nothing secret is in the repository: this script writes them into two named volumes.

* ``--app-dir`` (the app's, mounted read-only at /etc/error-exporter/tls): ``web.yml`` (the
  web config file: TLS with ``tls.crt``/``tls.key``, basic auth with a bcrypt hash of the
  password) and ``ca.crt`` (for the container's health check).
* ``--prometheus-dir`` (Prometheus', mounted read-only at /etc/prometheus/secrets): ``ca.crt``
  (the private CA that signed the app's certificate) and ``scrape-password`` (basic auth's
  ``password_file``).

The password comes from ERROR_EXPORTER_SCRAPE_PASSWORD; the user is ``prometheus``. The CA's
key is thrown away once the server certificate is signed. Run again (every ``up``), it keeps
what is there: a new certificate only when it is missing or expires within 30 days, a new
hash only when the password changed. Needs ``openssl``, ``bcrypt`` and PyYAML (the app image
has them).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import bcrypt
import yaml

USER = "prometheus"
PASSWORD_ENV = "ERROR_EXPORTER_SCRAPE_PASSWORD"
DEFAULT_HOSTS = "app,localhost,127.0.0.1"
RENEW_SECONDS = 30 * 86400


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"tls-init: openssl {args[0]} failed: {done.stderr.strip()}")


def write(path: Path, data: bytes, mode: int, uid: int | None) -> None:
    """Atomically (a reader never sees half a file), with its mode and owner."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, -1)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def san(hosts: list[str]) -> str:
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def certificate_is_fresh(cert: Path) -> bool:
    if not cert.is_file():
        return False
    done = subprocess.run(
        ["openssl", "x509", "-checkend", str(RENEW_SECONDS), "-noout", "-in", str(cert)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def make_certificates(hosts: list[str], days: int) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) made by openssl in a scratch dir."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            str(days),
            "-subj",
            "/CN=error-exporter compose CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=work,
        )
        (work / "server.ext").write_text(
            f"subjectAltName={san(hosts)}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            f"/CN={hosts[0]}",
            cwd=work,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            str(days),
            "-extfile",
            "server.ext",
            cwd=work,
        )
        ca, cert, key = ((work / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key"))
        return ca, cert, key


def current_hash(web_config: Path) -> bytes | None:
    if not web_config.is_file():
        return None
    users = (yaml.safe_load(web_config.read_text()) or {}).get("basic_auth_users") or {}
    hashed = users.get(USER)
    return hashed.encode() if isinstance(hashed, str) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--prometheus-dir", type=Path, required=True)
    parser.add_argument(
        "--hosts",
        default=DEFAULT_HOSTS,
        help=f"the certificate's names, comma-separated (default {DEFAULT_HOSTS})",
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--app-uid", type=int, help="owner of the app's files (as root)")
    parser.add_argument(
        "--prometheus-uid", type=int, help="owner of Prometheus' password file (as root)"
    )
    parser.add_argument("--bcrypt-cost", type=int, default=10)
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        print(f"tls-init: {PASSWORD_ENV} is empty", file=sys.stderr)
        return 2
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    app, prom = args.app_dir, args.prometheus_dir
    for directory in (app, prom):
        directory.mkdir(parents=True, exist_ok=True)

    if not (
        certificate_is_fresh(app / "tls.crt")
        and (app / "tls.key").is_file()
        and (prom / "ca.crt").is_file()
    ):
        ca, cert, key = make_certificates(hosts, args.days)
        # the key first: a reader that sees the new certificate finds its key
        write(app / "tls.key", key, 0o600, args.app_uid)
        write(app / "tls.crt", cert, 0o644, args.app_uid)
        write(app / "ca.crt", ca, 0o644, args.app_uid)
        write(prom / "ca.crt", ca, 0o644, args.prometheus_uid)
        print(f"tls-init: new CA and server certificate for {', '.join(hosts)}")

    old = current_hash(app / "web.yml")
    if old is None or not bcrypt.checkpw(password.encode(), old):
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(args.bcrypt_cost)).decode()
        web = (
            "# made by deploy/tls-init.py (docker-compose.yml, service tls-init)\n"
            "tls_server_config:\n"
            "  cert_file: tls.crt\n"
            "  key_file: tls.key\n"
            "  min_version: TLS12\n"
            "http_server_config:\n"
            "  headers:\n"
            "    X-Content-Type-Options: nosniff\n"
            "basic_auth_users:\n"
            f"  {USER}: '{hashed}'\n"
        )
        write(app / "web.yml", web.encode(), 0o600, args.app_uid)
        print(f"tls-init: basic auth user {USER} with the password of {PASSWORD_ENV}")
    write(prom / "scrape-password", password.encode(), 0o600, args.prometheus_uid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small CA made with the ``openssl`` command, for the peer transport's tests.

An independent tool on purpose: the certificates, CRLs and revocations the
transport is tested against are not made by vedette's own code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_CONF = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = anything
unique_subject = no
copy_extensions = none

[ anything ]
commonName = supplied

[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = test CA

[ ca_ext ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
# The CA names its trust domain, as `vedette pki` makes it: origin signatures
# are checked against it (docs/contracts.md, "Peer sync protocol").
subjectAltName = $ENV::CA_SAN

[ node_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $ENV::NODE_SAN
authorityKeyIdentifier = keyid
"""


def openssl(*args: str, env: dict[str, str] | None = None) -> None:
    # The config names $ENV::NODE_SAN; every command loads it, so it must be set.
    full_env = {
        **os.environ,
        "NODE_SAN": "URI:spiffe://unused/node/unused",
        "CA_SAN": "URI:spiffe://unused",
        **(env or {}),
    }
    done = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, env=full_env, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


class OpensslCa:
    """``dir/ca.crt``, ``dir/ca.key``, ``dir/crl.pem``; nodes as ``dir/NODE.crt|key``."""

    def __init__(self, directory: Path, trust_domain: str) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("the openssl command is required (scripts/test installs it)")
        self.dir = directory
        self.trust_domain = trust_domain
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "issued").mkdir(exist_ok=True)
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        (directory / "crlnumber").write_text("1000\n")
        self.conf = directory / "openssl.cnf"
        self.conf.write_text(_CONF.format(dir=directory))
        openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"),
            "-days", "3650", "-subj", f"/CN={trust_domain} CA", "-config", str(self.conf),
            "-extensions", "ca_ext", env={"CA_SAN": f"URI:spiffe://{trust_domain}"},
        )  # fmt: skip
        self.gencrl()

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    def issue(
        self,
        node: str,
        *,
        start: str | None = None,
        end: str | None = None,
        san: str | None = None,
    ) -> tuple[Path, Path]:
        """Issues ``node``'s certificate (``start``/``end`` as YYYYMMDDHHMMSSZ)."""
        key, csr, crt = (self.dir / f"{node}.{ext}" for ext in ("key", "csr", "crt"))
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={node}",
        )  # fmt: skip
        dates = []
        if start:
            dates += ["-startdate", start]
        if end:
            dates += ["-enddate", end]
        openssl(
            "ca", "-batch", "-config", str(self.conf), "-extensions", "node_ext",
            "-in", str(csr), "-out", str(crt), "-notext", *dates,
            env={"NODE_SAN": san or f"URI:spiffe://{self.trust_domain}/node/{node}"},
        )  # fmt: skip
        key.chmod(0o600)
        return crt, key

    def revoke(self, crt: Path) -> None:
        openssl("ca", "-config", str(self.conf), "-revoke", str(crt))
        self.gencrl()

    def gencrl(self) -> None:
        tmp = self.dir / "crl.pem.tmp"
        openssl(
            "ca", "-gencrl", "-config", str(self.conf), "-out", str(tmp), "-crldays", "3650",
        )  # fmt: skip
        tmp.replace(self.crl)

    def files(self, node: str) -> dict[str, object]:
        """Keyword arguments for ``PeerService`` as ``node``."""
        return {
            "ca": self.ca,
            "cert": self.dir / f"{node}.crt",
            "key": self.dir / f"{node}.key",
            "crl": [self.crl],
            "trust_domain": self.trust_domain,
        }

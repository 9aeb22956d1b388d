"""The secured local broker's credentials and certificates, kept in its folder.

`pipelines broker start --secure` (or a profile with `broker.secure: true`) makes, on the first
start, everything a TLS + SCRAM broker needs, and keeps it for the next starts:

    DIR/credentials.properties  mode 0600: the passwords of the admin, producer and pipeline
                                principals and of the broker's key and trust stores. The single
                                file that holds secrets: the broker reads them from it through
                                Kafka's FileConfigProvider (`${file:...}` in server.properties),
                                and `pipelines broker env` prints the exports a client needs.
    DIR/tls/ca.p12              the local certificate authority (key and certificate, PKCS12)
    DIR/tls/ca.pem              its certificate as PEM: librdkafka's `ssl.ca.location`, and a
                                PEM truststore for Java clients (Spark's kafka source and sink)
    DIR/tls/broker.p12          the broker's key and certificate (CN=broker,
                                SAN=IP:127.0.0.1,DNS:localhost) signed by the CA, PKCS12
    DIR/tls/truststore.p12      the CA certificate as a PKCS12 truststore (for the broker)

The certificates are made by the JDK's `keytool` (no hand-rolled crypto); store passwords reach it
through its `:env` option, never on its command line. Passwords are `secrets.token_hex` strings:
no quoting trouble in JAAS lines or in `kafka-storage format --add-scram`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from pipelines.errors import BrokerError
from pipelines.security import KafkaSecurity

CREDENTIALS_FILE = "credentials.properties"
TLS_DIR = "tls"
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN, PRODUCER, PIPELINE = "admin", "producer", "pipeline"
PRINCIPALS = (ADMIN, PRODUCER, PIPELINE)
BROKER_DN = "CN=broker"
"""The distinguished name of the broker's certificate; `User:CN=broker` is the principal of the
broker's own connections to the controller (mutual TLS), a super user."""
CERT_VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class LocalCredentials:
    """What `DIR/credentials.properties` holds. `repr` never shows a password."""

    path: Path
    passwords: dict[str, str]
    """Principal name -> password, for every name in PRINCIPALS."""
    store_password: str
    """Of the broker's keystore and truststore (and of the CA's store)."""

    def __repr__(self) -> str:
        return f"LocalCredentials(path={self.path}, principals={sorted(self.passwords)}, passwords=***)"

    def password(self, principal: str) -> str:
        return self.passwords[principal]

    def secrets(self) -> list[str]:
        return [*self.passwords.values(), self.store_password]

    def ref(self, key: str) -> str:
        """A FileConfigProvider reference to `key` of this file, for server.properties."""
        return f"${{file:{self.path}:{key}}}"


def _write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (0600) before any secret is written to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def load_or_create_credentials(directory: Path) -> tuple[LocalCredentials, bool]:
    """The credentials of the secured broker in `directory`, created on first use; (creds, created)."""
    path = directory / CREDENTIALS_FILE
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise BrokerError(
                f"{path} holds passwords but is readable by others (mode {mode:o}); run `chmod 600 {path}`"
            )
        values = dict(
            line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#"
        )
        try:
            passwords = {p: values[f"{p}.password"] for p in PRINCIPALS}
            return LocalCredentials(path, passwords, values["store.password"]), False
        except KeyError as exc:
            missing = exc.args[0]
            raise BrokerError(f"{path} lacks {missing}; remove the broker folder to start afresh") from None
    directory.mkdir(parents=True, exist_ok=True)
    creds = LocalCredentials(path, {p: secrets.token_hex(16) for p in PRINCIPALS}, secrets.token_hex(16))
    lines = ["# Secrets of the local secured Kafka broker. Mode 0600; never commit or copy this file."]
    lines += [f"{p}.password={creds.passwords[p]}" for p in PRINCIPALS]
    lines += [f"store.password={creds.store_password}"]
    # The broker's inter-broker login, as a JAAS line the broker reads through FileConfigProvider.
    lines += [f"admin.jaas={scram_jaas(ADMIN, creds.passwords[ADMIN])}"]
    _write_private(path, "\n".join(lines) + "\n")
    return creds, True


def scram_jaas(username: str, password: str) -> str:
    """The `sasl.jaas.config` value of a SCRAM login (Kafka's Java clients and brokers)."""
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{username}" password="{password}";'
    )


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path
    keystore: Path
    truststore: Path


def tls_files(directory: Path) -> TlsFiles:
    tls = directory / TLS_DIR
    return TlsFiles(tls / "ca.pem", tls / "broker.p12", tls / "truststore.p12")


def find_keytool(java: str) -> str:
    """keytool next to `java` (the JDK's or JRE's bin folder), else on PATH."""
    beside = Path(java).resolve().parent / "keytool"
    if beside.is_file():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise BrokerError(
            "keytool (part of every JDK and JRE) was not found next to java or on PATH; it makes the "
            "secured broker's certificates"
        )
    return found


def ensure_certificates(directory: Path, creds: LocalCredentials, java: str) -> TlsFiles:
    """Make the CA, the broker's signed certificate and the truststore unless they exist."""
    files = tls_files(directory)
    if files.ca_pem.is_file() and files.keystore.is_file() and files.truststore.is_file():
        return files
    tls = files.ca_pem.parent
    if tls.exists():
        shutil.rmtree(tls)  # a half-made set from an interrupted start: make all of it again
    tls.mkdir(parents=True)
    os.chmod(tls, 0o700)
    keytool = find_keytool(java)
    env = {**os.environ, "PIPELINES_STORE_PASSWORD": creds.store_password}
    ca, csr, signed = tls / "ca.p12", tls / "broker.csr", tls / "broker.pem"
    validity, pkcs12 = ["-validity", str(CERT_VALIDITY_DAYS)], ["-storetype", "PKCS12"]
    key = ["-keyalg", "RSA", "-keysize", "2048", *validity, *pkcs12]

    def run(command: str, alias: str, keystore: Path, *args: str) -> None:
        """`keytool command -alias alias -keystore keystore args`, the store password from env."""
        argv = [keytool, command, "-alias", alias, "-keystore", str(keystore), *args]
        argv += ["-storepass:env", "PIPELINES_STORE_PASSWORD"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"keytool {command} failed: {(proc.stderr or proc.stdout).strip()[-1000:]}")

    # The CA: a self-signed key pair, its certificate exported as PEM.
    run("-genkeypair", "ca", ca, "-dname", "CN=pipelines local CA", "-ext", "bc:c", *key)
    run("-exportcert", "ca", ca, "-rfc", "-file", str(files.ca_pem))
    # The broker's key pair, its certificate signed by the CA (for 127.0.0.1 and localhost).
    run("-genkeypair", "broker", files.keystore, "-dname", BROKER_DN, *key)
    run("-certreq", "broker", files.keystore, "-file", str(csr))
    ext = ["-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-ext", "KU=digitalSignature,keyEncipherment"]
    ext += ["-ext", "EKU=serverAuth,clientAuth"]
    run("-gencert", "ca", ca, "-infile", str(csr), "-outfile", str(signed), "-rfc", *validity, *ext)
    # The keystore holds the chain (CA, then the signed certificate); the truststore the CA only.
    run("-importcert", "ca", files.keystore, "-noprompt", "-file", str(files.ca_pem))
    run("-importcert", "broker", files.keystore, "-noprompt", "-file", str(signed))
    run("-importcert", "ca", files.truststore, "-noprompt", "-file", str(files.ca_pem), *pkcs12)
    csr.unlink()
    for p in tls.iterdir():
        os.chmod(p, 0o644 if p == files.ca_pem else 0o600)
    return files


def secure_properties(creds: LocalCredentials, files: TlsFiles) -> dict[str, str]:
    """What a secured broker adds to its server.properties (listeners are set by the caller).

    Clients and the broker itself (inter-broker) use the SASL_SSL listener with SCRAM-SHA-512; the
    controller listener is SSL with client certificates required (mutual TLS), so only the holder of
    the broker's key reaches the controller: `User:CN=broker` and `User:admin` are the super users.
    Passwords are never written here: `${file:...}` references resolve them from the 0600
    credentials file when the broker starts (Kafka's FileConfigProvider).
    """
    store_password = creds.ref("store.password")
    return {
        "config.providers": "file",
        "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": creds.ref("admin.jaas"),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(files.keystore),
        "ssl.keystore.password": store_password,
        "ssl.key.password": store_password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(files.truststore),
        "ssl.truststore.password": store_password,
        "ssl.endpoint.identification.algorithm": "https",
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN};User:{BROKER_DN}",
    }


def add_scram_args(creds: LocalCredentials) -> list[str]:
    """`kafka-storage format` arguments that create every principal's SCRAM credential.

    The passwords are on the format command's line (`/proc/PID/cmdline`) for the seconds it runs,
    once, at the first start: the storage tool takes SCRAM credentials no other way.
    """
    args: list[str] = []
    for principal in PRINCIPALS:
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={principal},password={creds.password(principal)}]"]
    return args


def principal_security(directory: Path, principal: str) -> KafkaSecurity:
    """How a client logs in to the secured broker in `directory` as `principal` (SASL_SSL, SCRAM)."""
    if not (directory / CREDENTIALS_FILE).is_file():
        raise BrokerError(f"no secured broker has been started in {directory}")
    creds, _ = load_or_create_credentials(directory)
    if principal not in creds.passwords:
        known = ", ".join(PRINCIPALS)
        raise BrokerError(f"the local secured broker has no principal {principal!r}; it has {known}")
    return KafkaSecurity(
        protocol="SASL_SSL",
        mechanism=SCRAM_MECHANISM,
        username=principal,
        password=SecretStr(creds.password(principal)),
        ca_location=tls_files(directory).ca_pem,
    )

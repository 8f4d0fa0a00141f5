"""Certificates made by the tests themselves: a CA, server certificates for 127.0.0.1 and
localhost, and client certificates whose subject CN is a user name.

Built with the `cryptography` package. Every certificate and key is written as a PEM file in a
directory the test owns, in the format the broker's configuration points at: `certfile` is the
chain (leaf first), `keyfile` the private key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) form, and
`cafile` the CA certificate that verifies client certificates.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
CLOCK_SKEW = datetime.timedelta(hours=1)

# How a private key is written: what the broker must read in each case.
KEY_FORMATS = ("ec-pkcs8", "ec-sec1", "rsa-pkcs8", "rsa-pkcs1")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key on disk: `cert` holds the chain (leaf first)."""

    cert: Path
    key: Path
    common_name: str


def _new_key(kind: str):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key, key_format: str) -> bytes:
    """The key as PEM: `*-pkcs8` is `BEGIN PRIVATE KEY`, `rsa-pkcs1` is `BEGIN RSA PRIVATE
    KEY`, `ec-sec1` is `BEGIN EC PRIVATE KEY`."""
    form = (serialization.PrivateFormat.PKCS8 if key_format.endswith("pkcs8")
            else serialization.PrivateFormat.TraditionalOpenSSL)
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hydrant tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class CertificateAuthority:
    """A self-signed CA (optionally with an intermediate that signs the leaves) whose files live
    in `directory`; `ca_file` is the root certificate clients and the broker trust."""

    def __init__(self, directory: Path, name: str = "hydrant test CA",
                 intermediate: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._slug = name.replace(" ", "-")
        self._root_key = _new_key("ec")
        self._root_cert = self._sign(
            subject=_name(name), public_key=self._root_key.public_key(),
            issuer_cert=None, issuer_key=self._root_key, ca=True,
        )
        self.ca_file = self.directory / f"{self._slug}.ca.pem"
        self.ca_file.write_bytes(self._root_cert.public_bytes(serialization.Encoding.PEM))
        self._chain: list[x509.Certificate] = []
        self._signing_cert, self._signing_key = self._root_cert, self._root_key
        if intermediate:
            key = _new_key("ec")
            cert = self._sign(
                subject=_name(f"{name} intermediate"), public_key=key.public_key(),
                issuer_cert=self._root_cert, issuer_key=self._root_key, ca=True,
            )
            self._chain = [cert]
            self._signing_cert, self._signing_key = cert, key

    def _sign(self, subject, public_key, issuer_cert, issuer_key, ca: bool,
              server_names: tuple = (), client: bool = False) -> x509.Certificate:
        issuer = subject if issuer_cert is None else issuer_cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW)
            .not_valid_after(_now() + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if issuer_cert is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()),
                critical=False,
            )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=True, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                       else ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        if server_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(server_names)),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def _write(self, stem: str, cert: x509.Certificate, key, key_format: str,
               common_name: str) -> Issued:
        chain = [cert, *self._chain]
        cert_path = self.directory / f"{stem}.cert.pem"
        key_path = self.directory / f"{stem}.key.pem"
        cert_path.write_bytes(b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in chain))
        key_path.write_bytes(_key_pem(key, key_format))
        return Issued(cert=cert_path, key=key_path, common_name=common_name)

    def issue_server(self, stem: str = "server", key_format: str = "ec-pkcs8") -> Issued:
        """A server certificate valid for 127.0.0.1, ::1 and localhost; the chain file holds
        the leaf and the intermediate (if any), the key is written in `key_format`."""
        if key_format not in KEY_FORMATS:
            raise ValueError(f"unknown key format {key_format!r}, expected one of {KEY_FORMATS}")
        key = _new_key(key_format.split("-")[0])
        names = (
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        )
        cert = self._sign(
            subject=_name("localhost"), public_key=key.public_key(),
            issuer_cert=self._signing_cert, issuer_key=self._signing_key, ca=False,
            server_names=names,
        )
        return self._write(f"{self._slug}.{stem}", cert, key, key_format, "localhost")

    def issue_client(self, common_name: str, key_format: str = "ec-pkcs8") -> Issued:
        """A client certificate whose subject CN is `common_name` (the user name a listener
        with `use_identity_as_username` takes)."""
        key = _new_key(key_format.split("-")[0])
        cert = self._sign(
            subject=_name(common_name), public_key=key.public_key(),
            issuer_cert=self._signing_cert, issuer_key=self._signing_key, ca=False,
            client=True,
        )
        return self._write(f"{self._slug}.client-{common_name}", cert, key, key_format,
                           common_name)

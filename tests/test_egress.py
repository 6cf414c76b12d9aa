"""The egress policy: which addresses the broker may fetch from, and that a refused fetch
sends nothing (real loopback servers record every request they get)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from execbroker.egress import EgressPolicy, address_class, egress_client, fetch, host_address
from execbroker.exceptions import EgressRefusedError
from tests.support.recording_server import recording_server


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - classified, not bound
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.7", "private"),  # documentation (TEST-NET-1)
        ("::ffff:127.0.0.1", "loopback address (127.0.0.1 inside it)"),
        ("::ffff:10.1.2.3", "private address (10.1.2.3 inside it)"),
        ("::127.0.0.1", "loopback address (127.0.0.1 inside it)"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "link-local address (169.254.169.254 inside it)"),  # NAT64
        ("2002:c0a8:101::1", "private address (192.168.1.1 inside it)"),  # 6to4
    ],
)
def test_addresses_that_are_denied_by_default(address: str, reason: str) -> None:
    found = address_class(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_are_not_denied(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/ui/token-hint", "127.0.0.1 is a loopback address"),
        ("http://2130706433/", "2130706433 is a loopback address"),  # decimal
        ("http://0x7f.1/", "0x7f.1 is a loopback address"),  # hex, short form
        ("http://0177.0.0.1/", "0177.0.0.1 is a loopback address"),  # octal
        ("http://127.1:9/", "127.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://localhost:8080/metrics", "localhost is a loopback name"),
        ("https://LocalHost./x", "localhost. is a loopback name"),
        ("http://evil.localhost/", "evil.localhost is a loopback name"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://user:pw@10.0.0.5/x?y=1", "10.0.0.5 is a private address"),
        ("s3://100.64.1.1/bucket", "100.64.1.1 is a shared (carrier-grade NAT) address"),
        # Spelled in compatibility digits and letters, which IDNA folds (NFKC) to ASCII.
        ("http://\u2460\u2461\u2466.0.0.1/x", "127.0.0.1 is a loopback address"),
        (
            "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
            "localhost is a loopback name",
        ),
    ],
)
def test_literal_denied_destinations_are_refused_without_dns(url: str, shown: str) -> None:
    reason = EgressPolicy().literal_refusal(url)
    assert reason is not None
    assert reason.startswith(shown)


@pytest.mark.parametrize(
    "url", ["https://data.example.org/x.fits", "http://8.8.8.8/", "http://runsc/", "not a url"]
)
def test_names_and_public_addresses_wait_for_the_fetch(url: str) -> None:
    # Names are resolved (and checked) when fetched, never at planning time.
    assert EgressPolicy().literal_refusal(url) is None


def test_the_allow_list_opens_blocks_addresses_and_names() -> None:
    policy = EgressPolicy(["10.1.0.0/16", "127.0.0.1", "localhost:8491", "data.internal:443"])
    assert policy.literal_refusal("http://10.1.200.3/") is None
    assert policy.literal_refusal("http://10.2.0.1/") is not None
    assert policy.literal_refusal("http://127.0.0.1:1234/") is None
    assert policy.literal_refusal("http://[::ffff:127.0.0.1]:1234/") is None
    assert policy.literal_refusal("http://localhost:8491/") is None
    assert policy.literal_refusal("http://localhost:8492/") is not None
    address = ipaddress.ip_address("10.9.9.9")
    assert policy.refusal("data.internal", 443, address) is None
    assert policy.refusal("data.internal", 80, address) == "10.9.9.9 is a private address"


@pytest.mark.parametrize("entry", ["", "a b", "host:0", "host:http", "10.0.0.0/33/1"])
def test_allow_list_entries_that_do_not_read_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"CIDR|port|empty"):
        EgressPolicy([entry])


def test_ipv4_spellings_are_read_as_the_resolver_reads_them() -> None:
    assert host_address("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert host_address("0x7f000001") == ipaddress.ip_address("127.0.0.1")
    assert host_address("[::1]") == ipaddress.ip_address("::1")
    assert host_address("cafe.example") is None
    assert host_address("deadbeef") is None  # a name: inet_aton reads no letters but x


def test_this_machines_own_addresses_are_refused() -> None:
    policy = EgressPolicy()
    own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    assert own
    for text in own:
        address = ipaddress.ip_address(str(text).partition("%")[0])
        assert policy.refusal(socket.gethostname(), 80, address) is not None


# ------------------------------------------------------------------ fetches, for real


async def _get(policy: EgressPolicy, url: str) -> tuple[int, bytes]:
    async with egress_client(policy, seconds=5) as client, fetch(client, url) as response:
        return response.status_code, await response.aread()


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "localhost",
        "2130706433",
        "0x7f.1",
        socket.gethostname(),  # a name that resolves to this machine (loopback here)
    ],
)
async def test_a_denied_destination_gets_no_request(spelling: str) -> None:
    with recording_server() as target:
        with pytest.raises(EgressRefusedError, match="is not allowed") as refused:
            await _get(EgressPolicy(), f"http://{spelling}:{target.port}/secret")
        assert target.requests == []
    assert spelling in str(refused.value)


async def test_an_ipv4_mapped_destination_gets_no_request() -> None:
    with recording_server() as target:
        url = f"http://[::ffff:127.0.0.1]:{target.port}/secret"
        with pytest.raises(EgressRefusedError, match="loopback address"):
            await _get(EgressPolicy(), url)
        assert target.requests == []


async def test_an_allowed_name_is_fetched_at_the_checked_address_with_its_own_host() -> None:
    with recording_server() as target:
        status, body = await _get(
            EgressPolicy([f"localhost:{target.port}"]), f"http://localhost:{target.port}/file"
        )
    assert (status, body) == (200, b"SECRET /file")
    # The connection went to the address that was checked; the server still saw the name.
    assert target.requests == [("/file", f"localhost:{target.port}")]


async def test_a_redirect_to_a_denied_address_is_not_followed() -> None:
    with recording_server() as allowed, recording_server() as internal:
        policy = EgressPolicy([f"127.0.0.1:{allowed.port}"])
        for hidden in (
            f"http://127.0.0.1:{internal.port}/secret",
            f"http://localhost:{internal.port}/secret",
            f"http://2130706433:{internal.port}/secret",
        ):
            url = f"{allowed.url}/redirect?to={hidden}"
            with pytest.raises(EgressRefusedError, match="is not allowed"):
                await _get(policy, url)
        with pytest.raises(EgressRefusedError, match="file:// location is not followed"):
            await _get(policy, f"{allowed.url}/redirect?to=file:///etc/passwd")
        assert internal.requests == []
        assert len(allowed.requests) == 4


async def test_an_allowed_redirect_is_followed_and_a_loop_is_cut() -> None:
    with recording_server() as allowed:
        policy = EgressPolicy([f"127.0.0.1:{allowed.port}"])
        status, body = await _get(policy, f"{allowed.url}/redirect?to=/file")
        assert (status, body) == (200, b"SECRET /file")
        with pytest.raises(EgressRefusedError, match="more than 5 redirects"):
            await _get(policy, f"{allowed.url}/loop")
        assert [path for path, _ in allowed.requests].count("/loop") == 6


def _certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (and its key), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_checks_the_name_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    """The connection goes to 127.0.0.1, but SNI and the certificate check use the name: a
    certificate for ``localhost`` is accepted for ``localhost``, and for nothing else."""
    cert_file, key_file = _certificate_for("localhost", tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    with recording_server(tls=server_side) as target:
        policy = EgressPolicy([f"localhost:{target.port}", f"127.0.0.1:{target.port}"])
        async with (
            egress_client(policy, seconds=5, verify=trusting) as client,
            fetch(client, f"https://localhost:{target.port}/file") as response,
        ):
            assert response.status_code == 200
            assert await response.aread() == b"SECRET /file"
        # The same server by its address: the certificate does not name it.
        async with egress_client(policy, seconds=5, verify=trusting) as client:
            with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                async with fetch(client, f"https://127.0.0.1:{target.port}/file"):
                    pass
    assert target.server_names[0] == "localhost"
    assert target.requests == [("/file", f"localhost:{target.port}")]

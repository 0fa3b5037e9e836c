"""moto's Route 53 in server mode on loopback, for the adapter's and the rollover's tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def zone(endpoint: str, name: str, private: bool = False) -> str:
    client = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1")
    kwargs: dict = {"Name": name, "CallerReference": str(time.time_ns())}  # type: ignore[type-arg]
    if private:
        kwargs["HostedZoneConfig"] = {"PrivateZone": True, "Comment": "private"}
        kwargs["VPC"] = {"VPCRegion": "us-east-1", "VPCId": "vpc-12345"}
    return str(client.create_hosted_zone(**kwargs)["HostedZone"]["Id"]).rsplit("/", 1)[-1]

"""The HTTP layer reads its proxies and CA bundle from the environment, as requests and curl do."""

from __future__ import annotations

import certifi
import pytest

from kps_warehouse.source.transport import CA_BUNDLE_VARIABLES, ca_bundle, environment_proxy

VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", *CA_BUNDLE_VARIABLES)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_proxy_for_the_scheme_then_all_proxy_unless_no_proxy_names_the_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy:3128")
    monkeypatch.setenv("ALL_PROXY", "http://any-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.example")

    assert environment_proxy("https", "kms.cn-north-4.myhuaweicloud.com") == "http://tls-proxy:3128"
    assert environment_proxy("http", "kms.cn-north-4.myhuaweicloud.com") == "http://any-proxy:3128"
    assert environment_proxy("https", "kms.internal.example:443") is None
    assert environment_proxy("http", "localhost:8080") is None


def test_no_proxy_networks_exempt_the_addresses_inside_them(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy:3128")
    monkeypatch.setenv("no_proxy", "kps.example, 10.0.0.0/8,fd00::/8,192.168.1.7")

    assert environment_proxy("https", "10.20.30.40:443") is None
    assert environment_proxy("https", "[fd00::1]:443") is None
    assert environment_proxy("https", "192.168.1.7") is None
    assert environment_proxy("https", "192.168.1.8") == "http://tls-proxy:3128"
    assert environment_proxy("https", "11.0.0.1") == "http://tls-proxy:3128"
    assert environment_proxy("https", "kps.cn-north-4.myhuaweicloud.com") == "http://tls-proxy:3128"


def test_no_proxy_variables_mean_a_direct_connection():
    assert environment_proxy("https", "kms.cn-north-4.myhuaweicloud.com") is None


def test_the_ca_bundle_is_the_one_requests_would_use_then_openssls_then_certifis(monkeypatch):
    assert ca_bundle() == certifi.where()
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/openssl.pem")
    assert ca_bundle() == "/etc/ssl/openssl.pem"
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    assert ca_bundle() == "/etc/ssl/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests.pem")
    assert ca_bundle() == "/etc/ssl/requests.pem"

from __future__ import annotations

from support import ApiClient


def test_certificates_in_certificate_mode_is_signed(client_b: ApiClient) -> None:
    resp = client_b.get("/v3/certificates")
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"][0]["encrypt_certificate"]["algorithm"] == "AEAD_AES_256_GCM"


def test_live_server_answers_signed(live_server, world) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from support import SP_B, ApiClient

    with httpx.Client(base_url=live_server.url) as http:
        client = ApiClient(http, world, SP_B)
        resp = client.get("/v3/certificates")
        assert resp.status_code == 200, resp.text

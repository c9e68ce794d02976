"""What the server holds that is secret stays out of ``repr``: settings (the sandbox token, the database
password), merchants (APIv3 key; a Caller and a handler's Ctx show their Merchant), platform key rows,
generated merchant key pairs and scenario entries. A repr reaches assertion messages, debuggers,
``log.debug("%r", ...)`` and tracebacks with locals; the SDK's Config already kept its keys out."""

from __future__ import annotations

from pathlib import Path

from support import World
from wxpartner.domain.merchants import Caller, KeyMode, Merchant, Role
from wxpartner.protocol import keys as k
from wxpartner.sandbox.material import MerchantKeyFiles
from wxpartner.sandbox.scenario import MerchantSpec, PlatformKeySpec
from wxpartner.server.settings import Settings
from wxpartner.store.registry import PlatformKeyRow

APIV3 = "S3cretApiV3Key0123456789abcdefXY"


def test_settings_repr_hides_the_token_and_the_database_password() -> None:
    settings = Settings(sandbox_token="tok-Secret-42", database_url="postgresql://wx:pw-Secret-42@db:5432/wx")
    shown = repr(settings)
    assert "Secret-42" not in shown and "Secret-42" not in str(settings)
    assert "sandbox_token='***'" in shown and "postgresql://wx:***@db:5432/wx" in shown
    assert "Secret" not in repr(Settings(database_url="no url: pw-Secret"))
    # libpq (so psycopg) takes the password as a query parameter too; hide_password left it there
    in_query = Settings(database_url="postgresql://wx@db/wx?sslmode=require&password=pw-Secret-42")
    assert "Secret" not in repr(in_query)
    assert "postgresql://wx@db/wx?password=***&sslmode=require" in repr(in_query)
    assert "Secret" not in repr(Settings(database_url="postgresql://wx@db/wx?sslpassword=k-Secret"))
    assert "sandbox_token=''" in repr(Settings())  # unset stays visibly unset


def test_merchant_caller_platform_key_and_key_files_hide_their_secrets(world: World) -> None:
    merchant = Merchant("1900000001", "甲", Role.SERVICE_PROVIDER, APIV3, KeyMode.PUBLIC_KEY, None)
    pem = next(iter(world.merchants.values())).private_key_pem
    body = pem.splitlines()[1]  # a line of the key's base64: in no repr
    row = PlatformKeyRow("PUB_KEY_ID_01", "public_key", None, pem, "pub", None, 0.0, 1.0, False, 0.0)
    files = MerchantKeyFiles("SERIAL", Path("k.pem"), Path("c.pem"), pem, "cert", "pub")
    shown = [
        repr(merchant),
        repr(Caller(merchant, "SERIAL", None)),
        repr(row),
        repr(files),
        repr(MerchantSpec(mchid="1900000001", apiv3_key=APIV3)),
        repr(PlatformKeySpec(kind="public_key", key_id="PUB_KEY_ID_01", private_key=pem)),
    ]
    for text in shown:
        assert APIV3 not in text and body not in text, text
    assert "1900000001" in shown[0] and "PUB_KEY_ID_01" in shown[2]  # the rest is still there
    assert k.load_private_key(row.private_key_pem)  # hidden from repr only

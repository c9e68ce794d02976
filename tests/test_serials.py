"""protocol/serials.py: which registered serial a mistyped one spells (used by the refusals)."""

from __future__ import annotations

import pytest

from wxpartner.protocol.serials import hint, misspelt

SERIAL = "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567".lstrip("0")
PUB = "PUB_KEY_ID_0114232134912410000000000000"
REGISTERED = ["7132D72A03E93CDDF8C03BBD1F37EEDF00000001", SERIAL, PUB]


@pytest.mark.parametrize(
    ("sent", "meant", "how"),
    [
        (SERIAL.lower(), SERIAL, "in lower case"),
        (SERIAL[:20] + SERIAL[20:].lower(), SERIAL, "in lower case"),
        (str(int(SERIAL, 16)), SERIAL, "in decimal"),
        ("0" + SERIAL, SERIAL, "as OpenSSL prints it"),
        ("serial=" + SERIAL, SERIAL, "as OpenSSL prints it"),
        ("SERIAL=0" + SERIAL.lower(), SERIAL, "as OpenSSL prints it"),
        (":".join(SERIAL[i : i + 2] for i in range(0, len(SERIAL), 2)), SERIAL, "as OpenSSL prints it"),
        (PUB.lower(), PUB, "in lower case"),
    ],
)
def test_a_misspelling_names_the_serial_it_spells(sent: str, meant: str, how: str) -> None:
    found = misspelt(sent, REGISTERED)
    assert found is not None and found[0] == meant and found[1].startswith(how)
    assert hint(sent, REGISTERED).startswith(f"; it is the registered serial {meant} written {how}")


@pytest.mark.parametrize(
    "sent",
    [
        SERIAL,  # registered as sent: nothing to hint
        "",
        "ABCDEF0123",
        SERIAL[:-1],
        str(int(SERIAL, 16) + 1),
        "9" * 200,  # too long to be a serial in any base
        "PUB_KEY_ID_0114232134912410000000000001",
        "０１２３",  # full-width digits are not a decimal serial
    ],
)
def test_anything_else_spells_none(sent: str) -> None:
    assert misspelt(sent, REGISTERED) is None
    assert hint(sent, REGISTERED) == ""

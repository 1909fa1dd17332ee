import base64
import binascii
import os

import pytest

from stages.common import aws, base64_codec
from stages.common.config import Settings


@pytest.mark.parametrize("size", [0, 1, 2, 3, 57, 1000, 262_144])
def test_decode_and_encode_give_the_standard_librarys_bytes(size: int) -> None:
    data = os.urandom(size)
    text = base64.b64encode(data)
    assert base64_codec.encode(data) == text
    assert base64_codec.decode(text) == data
    assert base64_codec.decode(text.decode()) == data


@pytest.mark.parametrize("text", ["aGVs\nbG8=", "aGVs bG8=", "aGVs*bG8="])
def test_characters_outside_the_alphabet_are_skipped_as_base64_does(text: str) -> None:
    assert base64_codec.decode(text) == base64.b64decode(text) == b"hello"


@pytest.mark.parametrize("text", ["aGVsbG8", "a", "é"])
def test_what_base64_refuses_is_refused(text: str) -> None:
    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode(text)
    with pytest.raises((binascii.Error, ValueError)):
        base64_codec.decode(text)


def test_boto3_clients_decode_blobs_with_it() -> None:
    client = aws.client("kinesis", Settings(aws_endpoint_url="http://127.0.0.1:1"))
    factory = client._endpoint._response_parser_factory
    assert factory.create_parser("json")._blob_parser is base64_codec.decode

import pytest

from backend.errors import MalformedBody
from backend.formdata import parse_form, split_key


def test_encoded_and_plain_brackets_give_the_same_tree():
    encoded = "leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&leads%5Bstatus%5D%5B1%5D%5Bid%5D=2&account%5Bid%5D=9"
    plain = "leads[status][0][id]=1&leads[status][1][id]=2&account[id]=9"
    expected = {"leads": {"status": [{"id": "1"}, {"id": "2"}]}, "account": {"id": "9"}}
    assert parse_form(encoded) == parse_form(plain.encode()) == expected


def test_values_stay_strings_and_plus_is_a_space():
    assert parse_form("a[name]=Deal+%2315&a[price]=0&a[empty]=") == {
        "a": {"name": "Deal #15", "price": "0", "empty": ""}}


def test_numeric_keys_become_lists_in_index_order_and_empty_brackets_append():
    assert parse_form("x[10]=b&x[2]=a") == {"x": ["a", "b"]}
    assert parse_form("tags[]=one&tags[]=two") == {"tags": ["one", "two"]}


def test_mixed_keys_stay_a_dict():
    assert parse_form("d[0]=a&d[name]=b") == {"d": {"0": "a", "name": "b"}}


@pytest.mark.parametrize("body", ["a[b=1", "a]b[=1", "a=1&a[b]=2", "a[b]=2&a=1", b"\xff=1",
                                  "=x", "a" + "[b]" * 20 + "=1"])
def test_malformed_bodies_raise(body):
    with pytest.raises(MalformedBody):
        parse_form(body)


def test_split_key():
    assert split_key("data[merges][FNAME]") == ["data", "merges", "FNAME"]

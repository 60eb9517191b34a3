import time

import pytest

from backend.errors import MailsyncError, MalformedBody
from backend.formdata import MAX_DEPTH, MAX_FIELDS, MAX_KEY_LENGTH, parse_form, split_key


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


def test_appends_follow_explicit_indexes_as_in_php():
    assert parse_form("a[5]=x&a[]=y") == {"a": ["x", "y"]}
    assert parse_form("a[]=x&a[3]=y&a[]=z") == {"a": ["x", "y", "z"]}
    assert parse_form("a[][id]=1&a[][id]=2") == {"a": [{"id": "1"}, {"id": "2"}]}


def test_the_root_stays_an_object_when_its_keys_are_numbers():
    assert parse_form("0=a&1=b") == {"0": "a", "1": "b"}


def test_an_append_flood_parses_in_linear_time():
    started = time.process_time()
    assert parse_form("&".join(["x[]=a"] * 19_990)) == {"x": ["a"] * 19_990}
    assert time.process_time() - started < 0.5  # was 10-12 s: every append counted the list


def test_a_maximum_size_body_parses_in_well_under_a_second():
    item = "leads%5Bstatus%5D%5B{n}%5D%5B{field}%5D={value}"
    pairs = [item.format(n=n, field=f, value=n) for n in range(2000) for f in range(8)]
    body = "&".join(pairs).encode()
    assert len(body) > 600_000 and len(pairs) == 16_000
    started = time.process_time()
    assert len(parse_form(body)["leads"]["status"]) == 2000
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize("body, code", [
    ("a=1&" * MAX_FIELDS + "a=1", "too_many_fields"),
    ("data[%C2%B2]=x", "bad_form_key"),  # "²".isdigit(), but no index
    ("data[" + "9" * 5000 + "]=x", "bad_form_key"),  # longer than any key
    ("k" * (MAX_KEY_LENGTH + 1) + "=x", "bad_form_key"),
    ("data[1234567890123]=x", "bad_form_index"),
    ("a" + "[b]" * MAX_DEPTH + "=1", "form_too_deep"),
])
def test_limits_refuse_with_their_own_code(body, code):
    with pytest.raises(MailsyncError) as refused:
        parse_form(body)
    assert refused.value.code == code
    assert refused.value.status_code == (413 if code == "too_many_fields" else 400)


def test_bodies_at_the_limits_are_read():
    assert len(parse_form("a=1&" * (MAX_FIELDS - 1) + "a=1")) == 1
    assert parse_form("data[123456789012]=x") == {"data": ["x"]}
    assert parse_form("a" + "[b]" * (MAX_DEPTH - 1) + "=1")["a"]["b"]["b"]

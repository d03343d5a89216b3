"""The universal FFI and session variables through a real ``snakepit serve``:
refs that stay in the worker, stream refs, variables and their watches."""

from __future__ import annotations

import threading

import grpc
import pytest

import snakepit_client as sp

pytestmark = pytest.mark.server


def test_any_python_function(client: sp.Client) -> None:
    assert client.call("math", "sqrt", 16) == 4.0
    assert client.call("builtins", "round", 3.14159, ndigits=2) == 3.14
    assert client.call("os.path", "join", "a", "b") == "a/b"
    assert client.get("math", "pi") == pytest.approx(3.14159265)
    assert client.call("builtins", "divmod", 2**80, 7) == divmod(2**80, 7)


def test_a_python_exception_of_an_ffi_call(client: sp.Client) -> None:
    with pytest.raises(sp.PythonError) as err:
        client.call("math", "sqrt", -1)
    assert err.value.python_type == "ValueError"
    assert "math domain error" in err.value.message
    with pytest.raises(sp.PythonError) as missing:
        client.call("no_such_module_here", "f")
    assert missing.value.python_type == "ModuleNotFoundError"


def test_refs_stay_usable_in_later_calls_of_the_client(client: sp.Client) -> None:
    path = client.call("pathlib", "PurePosixPath", "/tmp/x.txt")
    assert isinstance(path, sp.Ref)
    assert "PurePosixPath" in path.type_name
    assert client.attr(path, "name") == "x.txt"
    csv = client.method(path, "with_suffix", ".csv")
    assert isinstance(csv, sp.Ref)
    assert client.call("builtins", "str", csv) == "/tmp/x.csv"  # a ref as an argument
    ns = client.call_class("types", "SimpleNamespace", a=1)
    client.set_attr(ns, "b", [1, 2])
    assert (client.attr(ns, "a"), client.attr(ns, "b")) == (1, [1, 2])
    client.release_ref(path)
    with pytest.raises(sp.RefNotFoundError) as gone:
        client.attr(path, "name")
    assert gone.value.kind == "ref_not_found"
    client.release_ref(path)  # twice is no error
    assert client.attr(csv, "suffix") == ".csv"  # the others live on


def test_refs_belong_to_their_session(client: sp.Client) -> None:
    with client.session() as s:
        counter = s.call_class("collections", "deque", [1, 2, 3], maxlen=5)
        assert isinstance(counter, sp.Ref)
        s.method(counter, "append", 4)
        assert s.get("sys", "maxsize") == 2**63 - 1
        assert s.call("builtins", "len", counter) == 4
        assert s.call("builtins", "list", counter) == [1, 2, 3, 4]
    # Released with its session, and of no use in another.
    with pytest.raises(sp.SessionNotFoundError):
        s.info()
    with client.session() as other, pytest.raises(sp.BadArgumentsError) as err:
        other.attr(counter, "maxlen")
    assert err.value.kind == "session_mismatch"


def test_a_stream_ref_is_iterated_through_next(client: sp.Client) -> None:
    it = client.call("builtins", "iter", [1, 2, 3, 4, 5])
    assert isinstance(it, sp.StreamRef)
    assert it.next(2) == [1, 2]
    assert client.next(it) == [3]
    assert list(it) == [4, 5]
    assert it.next(3) == []
    with client.session() as s:
        counting = s.call("itertools", "count", 10)
        assert isinstance(counting, sp.StreamRef)
        assert s.next(counting, 3) == [10, 11, 12]
        big = s.call("builtins", "iter", list(range(200)))
        assert list(big) == list(range(200))  # more than one batch
        s.release_ref(counting)
        with pytest.raises(sp.RefNotFoundError):
            s.next(counting, 1)


def test_call_stream_streams_what_the_function_returns(client: sp.Client) -> None:
    assert list(client.call_stream("builtins", "range", 5)) == [0, 1, 2, 3, 4]
    with client.session() as s:
        assert list(s.call_stream("itertools", "repeat", "x", 3)) == ["x", "x", "x"]


def test_session_variables(client: sp.Client) -> None:
    with client.session(pool="test", affinity="strict_queue") as s:
        var = s.register_variable("temperature", "float", 0.7, min=0.0, max=2.0, description="sampling")
        assert (var.name, var.type, var.value, var.description) == ("temperature", "float", 0.7, "sampling")
        assert var.constraints == {"min": 0.0, "max": 2.0}
        assert s.get_variable("temperature") == 0.7
        updated = s.set_variable("temperature", 0.9)
        assert (updated.value, updated.version > var.version) == (0.9, True)
        assert s.get_variable_info(var.id).value == 0.9  # by id too
        with pytest.raises(sp.VariableError) as bad:
            s.set_variable("temperature", 5.0)
        assert bad.value.kind == "variable"
        s.register_variable("count", "integer", 1)
        assert s.list_variables() == {"temperature": 0.9, "count": 1}
        assert s.execute("bump", name="count") == 2  # Python changes it
        assert s.get_variable("count") == 2
        assert s.info()["variables"] == 2
        with pytest.raises(sp.VariableError) as missing:
            s.get_variable("nope")
        assert (missing.value.kind, missing.value.code) == ("variable", grpc.StatusCode.NOT_FOUND)


def test_watching_variables_sees_the_changes_of_anyone(client: sp.Client) -> None:
    with client.session(pool="test", affinity="strict_queue") as s:
        s.register_variable("count", "integer", 0)
        s.register_variable("other", "string", "a")
        with s.watch_variables("count", include_initial=True) as watch:
            first = next(watch)
            assert (first.name, first.new_value, first.source) == ("count", 0, "initial")
            s.set_variable("other", "b")  # not watched
            s.set_variable("count", 5)
            by_client = next(watch)
            assert (by_client.name, by_client.old_value, by_client.new_value) == ("count", 0, 5)
            bump = threading.Thread(target=lambda: s.execute("bump", name="count"), daemon=True)
            bump.start()
            by_python = next(watch)
            assert (by_python.new_value, by_python.source) == (6, "python")
            assert by_python.version > by_client.version
            bump.join(timeout=30)

"""The bare JSON-RPC reader: answers, and a clear error for every way a node fails."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seccl_flwr.chain.errors import ChainError, ChainUnreachableError
from seccl_flwr.chain.jsonrpc import JsonRpcHttp
from seccl_flwr.chain.rpc_server import free_loopback_url


def _node(reply):
    """Serve ``reply(request) -> (status, body bytes)`` on a loopback port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # or a batch
            status, body = reply(request)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def node():
    servers = []

    def start(reply):
        server, url = _node(reply)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()


def _echo(request):
    answer = {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]}
    return 200, json.dumps(answer).encode()


def test_answers_are_matched_to_their_request_on_one_kept_alive_connection(node):
    rpc = JsonRpcHttp(node(_echo))
    for i in range(5):
        assert rpc.request("eth_call", [i])["result"] == [i]
    rpc.close()


def test_a_json_rpc_error_is_returned_for_the_caller_to_name(node):
    def revert(request):
        error = {"code": 3, "message": "execution reverted", "data": "0x12345678"}
        return 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode()

    rpc = JsonRpcHttp(node(revert))
    assert rpc.request("eth_call", [])["error"]["data"] == "0x12345678"
    rpc.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda r: (503, b"busy"), "HTTP 503"),
        (lambda r: (200, b"<html>proxy</html>"), "not JSON"),
        (lambda r: (200, json.dumps({"id": r["id"] + 1, "result": 1}).encode()), "request"),
        (lambda r: (200, b"[1, 2]"), "not a JSON-RPC answer"),
    ],
    ids=["http-error", "not-json", "wrong-id", "not-an-object"],
)
def test_an_answer_that_is_not_json_rpc_is_a_chain_error(node, reply, message):
    rpc = JsonRpcHttp(node(reply))
    with pytest.raises(ChainError, match=message):
        rpc.request("eth_blockNumber", [])
    rpc.close()


def test_a_node_that_is_down_is_unreachable_not_a_hang():
    url = free_loopback_url()  # nothing listens there
    with pytest.raises(ChainUnreachableError, match=url):
        JsonRpcHttp(url, timeout=2.0).request("eth_blockNumber", [])


def test_a_node_that_does_not_answer_in_time_is_unreachable(node):
    gate = threading.Event()

    def stall(request):
        gate.wait(5)
        return _echo(request)

    rpc = JsonRpcHttp(node(stall), timeout=0.3)
    try:
        with pytest.raises(ChainUnreachableError, match="does not answer"):
            rpc.request("eth_blockNumber", [])
    finally:
        gate.set()
        rpc.close()


def test_embedded_reads_are_answered_once_per_head_block():
    """Identical calls while no block is mined run the EVM once; a transaction (a new
    head) makes the next call read the new state."""
    from eth_account import Account
    from web3.middleware import Web3Middleware

    from seccl_flwr.chain.connection import connect, ensure_funded
    from seccl_flwr.chain.csc import CandidateSelection
    from seccl_flwr.chain.jsonrpc import EmbeddedJsonRpc
    from seccl_flwr.protocol.eip712 import Kind
    from tests.csc_helpers import open_csc

    w3 = connect("embedded")
    owner = Account.from_key(b"\x0b" * 32)
    ensure_funded(w3, owner)
    csc, _ = open_csc(w3, owner, b"\x01" * 32, [owner], 1)
    executed = []

    class CountingRequests(Web3Middleware):
        """Count the requests made through ``w3``'s middleware, outermost: not those that
        web3's own middleware makes while it handles one (chain id, accounts)."""

        depth = 0

        def wrap_make_request(self, make_request):
            def counted(method, params):
                if CountingRequests.depth == 0:
                    executed.append(method)
                CountingRequests.depth += 1
                try:
                    return make_request(method, params)
                finally:
                    CountingRequests.depth -= 1

            return counted

    w3.middleware_onion.add(CountingRequests, "count-requests")  # the outermost layer
    rpc = EmbeddedJsonRpc(w3)  # runs what its cache does not answer through w3's middleware
    deployer, csc = csc, CandidateSelection(w3, csc.address, transport=rpc)
    for _ in range(3):
        assert csc.anchor_of(0, Kind.GLOBAL_MODEL, owner.address) == bytes(32)
    assert executed == ["eth_call"]
    deployer.anchor(0, Kind.GLOBAL_MODEL, [owner.address], [b"\x07" * 32])
    executed.clear()
    assert csc.anchor_of(0, Kind.GLOBAL_MODEL, owner.address) == b"\x07" * 32
    assert csc.anchor_of(0, Kind.GLOBAL_MODEL, owner.address) == b"\x07" * 32
    assert executed == ["eth_call"]
    answer = rpc.request("eth_call", [{"to": csc.address, "data": "0x12345678"}, "latest"])
    assert answer["error"]["code"] == 3  # an unknown selector reverts, and is not cached as ok


def test_a_batch_is_one_post_answered_by_id_in_any_order(node):
    posts = []

    def reversed_batch(request):
        posts.append(request)
        answers = [json.loads(_echo(r)[1]) for r in reversed(request)]
        return 200, json.dumps(answers).encode()

    rpc = JsonRpcHttp(node(reversed_batch))
    answers = rpc.batch([("eth_call", [1]), ("eth_chainId", []), ("eth_call", [3])])
    assert [a["result"] for a in answers] == [[1], [], [3]]
    assert len(posts) == 1 and len(posts[0]) == 3
    rpc.close()


def test_a_node_without_batches_is_asked_call_by_call(node):
    def no_batches(request):
        if isinstance(request, list):
            error = {"code": -32600, "message": "batch requests are not supported"}
            return 200, json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
        return _echo(request)

    rpc = JsonRpcHttp(node(no_batches))
    assert [a["result"] for a in rpc.batch([("a", [1]), ("b", [2])])] == [[1], [2]]
    rpc.close()


def test_a_batch_answer_that_misses_a_call_is_a_chain_error(node):
    def drops_one(request):
        return 200, json.dumps([json.loads(_echo(r)[1]) for r in request[:-1]]).encode()

    rpc = JsonRpcHttp(node(drops_one))
    with pytest.raises(ChainError, match="misses requests"):
        rpc.batch([("a", [1]), ("b", [2])])
    rpc.close()

"""A Flower ``Grid`` that runs ClientApps in this process, one after the other.

Flower's simulation engine runs each ClientApp in a Ray actor. For unit tests and
for benchmarks that compare strategies side by side, that start-up (seconds) and the
process hops hide what is being measured. :class:`InProcessGrid` keeps Flower's
Message API - the same strategies and ClientApps run unchanged - but delivers each
message by calling the ClientApp directly, on a deep copy, so the server can never
share objects with a client. A handler that raises becomes the error reply Flower's
simulation engine makes of it (:func:`error_reply`).
"""

import copy
import itertools
import secrets
from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

_ids = itertools.count(1)


def error_reply(message: Message, exc: Exception) -> Message:
    """Return the reply Flower's simulation engine sends when a ClientApp raises ``exc``.

    Its Ray actor wraps the exception as ``ClientAppException(str(exc))``
    (``flwr.simulation.ray_transport.ray_actor``) and its worker replies with
    ``ErrorCode.CLIENT_APP_RAISED_EXCEPTION`` and the reason
    ``str(type(ex)) + ":<'" + str(ex) + "'>"`` (``flwr.server.superlink.fleet.vce.vce_api``).
    So the reason carries ``str(exc)`` once, as it is, in both engines (Ray adds its
    actor's traceback); a :class:`~seccl_flwr.errors.VerificationError` names its own
    type in its message.
    """
    wrapped = ClientAppException(str(exc))
    reason = str(type(wrapped)) + ":<'" + str(wrapped) + "'>"
    return Message(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message
    )


def new_run_id() -> int:
    """Return a fresh random Flower run id, as the SuperLink assigns one per run.

    A node keeps what it has checked of a run's contract per run id: two runs that
    shared an id could share a stale check.
    """
    return secrets.randbits(63)


class InProcessGrid(Grid):
    """Deliver messages to ClientApps in-process.

    Parameters
    ----------
    client_app : ClientApp
        The app every node runs.
    num_nodes : int
        Number of nodes; node ids are ``1..num_nodes``, partition ids ``0..n-1``.
    run_config : dict
        The run config every node sees.
    node_config : Callable[[int], dict] | None
        Extra node config per partition id.
    unavailable : Callable[[int, Message], bool] | None
        Return ``True`` to make a node not answer a message (dropout tests).
    """

    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        run_config: dict | None = None,
        node_config: Callable[[int], dict] | None = None,
        unavailable: Callable[[int, Message], bool] | None = None,
    ) -> None:
        run_id = new_run_id()
        TaskIdentity.run_id = TaskIdentity._run_id or run_id
        TaskIdentity.task_id = TaskIdentity._task_id or 1
        TaskIdentity.node_id = TaskIdentity._node_id or 0
        self.client_app = client_app
        self.unavailable = unavailable
        self.contexts = {
            node_id: Context(
                run_id=run_id,
                node_id=node_id,
                node_config={
                    "partition-id": node_id - 1,
                    "num-partitions": num_nodes,
                    **(node_config(node_id - 1) if node_config else {}),
                },
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node_id in range(1, num_nodes + 1)
        }

    def set_run(self, run) -> None:  # noqa: D102 - not used in-process
        raise NotImplementedError

    @property
    def run(self):  # noqa: D102
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        """Create an instruction message (as Flower's grids do)."""
        return Message(
            content,
            dst_node_id=dst_node_id,
            message_type=message_type,
            group_id=group_id,
            ttl=ttl,
        )

    def get_node_ids(self) -> Iterable[int]:
        """Return the ids of all nodes."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102
        raise NotImplementedError("InProcessGrid only supports send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102
        raise NotImplementedError("InProcessGrid only supports send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver each message to its node's ClientApp and collect the replies."""
        replies = []
        for message in messages:
            node_id = message.metadata.dst_node_id
            if node_id not in self.contexts:
                continue  # no such node: no reply, as with a real SuperLink
            delivered = copy.deepcopy(message)
            delivered.metadata.__dict__["_message_id"] = f"m{next(_ids)}"
            if self.unavailable is not None and self.unavailable(node_id, delivered):
                continue
            try:
                reply = self.client_app(delivered, self.contexts[node_id])
            except Exception as exc:  # noqa: BLE001 - as Flower's simulation engine does
                reply = error_reply(delivered, exc)
            replies.append(copy.deepcopy(reply))
        return replies

"""The real A2A Python client (PyPI a2a-sdk 1.3.0) talking to an Agora agent at --url
(its base URL, `http://…/agents/<address>`), as any A2A user would:

1. resolve the agent card from <url>/.well-known/agent-card.json;
2. send --request (JSON) as a data part, without streaming (JSON-RPC), and get the task;
3. the same request again with streaming, collecting the events;
4. the same over the HTTP+JSON binding;
5. a text message (no data part), which the agent's text skill takes;
6. GetTask and ListTasks of the first task, CancelTask of it (finished: refused), and
   GetTask of a task that does not exist.

It prints one JSON line with what happened. Run by the Rust interop test
(skills/a2a/tests/it/interop.rs); Python dependencies pinned in requirements.txt.
"""

import argparse
import asyncio
import json
import uuid

import httpx
from google.protobuf import json_format, struct_pb2

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
)


def as_dict(message):
    return json_format.MessageToDict(message)


def data_message(request):
    value = struct_pb2.Value()
    json_format.ParseDict(request, value)
    return Message(
        role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(data=value)]
    )


async def send(client, message):
    events = []
    async for event in client.send_message(SendMessageRequest(message=message)):
        events.append(as_dict(event))
    return events


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--request", required=True)
    p.add_argument("--text", required=True)
    args = p.parse_args()
    request = json.loads(args.request)
    out = {}

    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, args.url).get_agent_card()
        out["card"] = as_dict(card)

        plain = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
        out["send"] = await send(plain, data_message(request))

        streaming = await create_client(card, ClientConfig(streaming=True, httpx_client=http))
        out["stream"] = await send(streaming, data_message(request))

        rest = await create_client(
            card,
            ClientConfig(
                streaming=False,
                httpx_client=http,
                supported_protocol_bindings=["HTTP+JSON"],
            ),
        )
        out["rest"] = await send(rest, data_message(request))

        text = Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=args.text)],
        )
        out["text"] = await send(plain, text)

        first = out["send"][-1]["task"]["id"]
        out["get"] = as_dict(await plain.get_task(GetTaskRequest(id=first)))
        out["list"] = as_dict(await plain.list_tasks(ListTasksRequest(page_size=2)))
        errors = {}
        try:
            await plain.cancel_task(CancelTaskRequest(id=first))
        except Exception as e:  # noqa: BLE001 - the class is what we check
            errors["cancel"] = [type(e).__name__, str(e)]
        try:
            await plain.get_task(GetTaskRequest(id="no-such-task"))
        except Exception as e:  # noqa: BLE001
            errors["unknown"] = [type(e).__name__, str(e)]
        out["errors"] = errors

    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

"""The real A2A Python client (PyPI a2a-sdk 1.3.0) hiring a paid skill of an Agora
agent at --url (its A2A base URL), paying with A2A's x402 extension, the payment signed
by the x402 package's EVM exact scheme (PyPI x402 2.25):

1. resolve the card, and find the x402 extension declared in it;
2. send --request (JSON) as a data part: the task waits for payment
   (x402.payment.status "payment-required", x402.payment.required);
3. sign the x402 payment for the offer (allow-listing the token, as any third-party
   buyer must) and send it on the task (x402.payment.status "payment-submitted",
   x402.payment.payload): the task completes with the result and the receipts;
4. the same with the streaming client, collecting the events.

It prints one JSON line with what happened. The buyer's key comes from the environment
(BUYER_KEY, hex). Run by the Rust interop test (agent-sdk/deploy/tests/it/x402.rs);
Python dependencies pinned in requirements.txt.
"""

import argparse
import asyncio
import json
import os
import uuid

import httpx
from eth_account import Account
from google.protobuf import json_format, struct_pb2

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest
from x402 import x402ClientSync
from x402.mechanisms.evm.exact import ExactEvmScheme
from x402.schemas.helpers import parse_payment_required

STATUS = "x402.payment.status"


def as_dict(message):
    return json_format.MessageToDict(message)


def ask(request):
    value = struct_pb2.Value()
    json_format.ParseDict(request, value)
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(data=value)])


def pay(task, payload):
    metadata = struct_pb2.Struct()
    metadata.update({STATUS: "payment-submitted", "x402.payment.payload": payload})
    return Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        task_id=task["id"],
        parts=[Part(text="Here is the payment.")],
        metadata=metadata,
    )


async def send(client, message):
    events = []
    async for event in client.send_message(SendMessageRequest(message=message)):
        events.append(as_dict(event))
    return events


def last_task(events):
    for event in reversed(events):
        if "task" in event:
            return event["task"]
    raise RuntimeError(f"no task in {events}")


def sign(payer, network, asset, max_amount, required):
    payer_client = x402ClientSync()
    payer_client.register(network, ExactEvmScheme(signer=payer))
    payer_client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": asset,
                             "max_amount_per_payment": max_amount}]}
    )
    payload = payer_client.create_payment_payload(parse_payment_required(required))
    return payload.model_dump(by_alias=True, exclude_none=True)


async def buy(client, request, sign_for):
    asked = await send(client, ask(request))
    waiting = last_task(asked)
    metadata = waiting["status"]["message"]["metadata"]
    payload = sign_for(metadata["x402.payment.required"])
    paid = await send(client, pay(waiting, payload))
    return {"asked": asked, "paid": paid}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--asset", required=True)
    p.add_argument("--max-amount", required=True)
    p.add_argument("--request", required=True)
    args = p.parse_args()
    request = json.loads(args.request)
    payer = Account.from_key(os.environ["BUYER_KEY"])
    sign_for = lambda required: sign(payer, args.network, args.asset, args.max_amount, required)
    out = {"buyer": payer.address}

    async with httpx.AsyncClient(timeout=120) as http:
        card = await A2ACardResolver(http, args.url).get_agent_card()
        out["card"] = as_dict(card)
        plain = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
        out["plain"] = await buy(plain, request, sign_for)
        streaming = await create_client(card, ClientConfig(streaming=True, httpx_client=http))
        out["stream"] = await buy(streaming, request, sign_for)

    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

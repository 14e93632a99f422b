// The real A2A TypeScript client (npm @a2a-js/sdk 1.3.0) talking to an Agora agent at
// --url (its A2A base URL, `http://…/agents/<address>`), as any A2A user would: it
// resolves the card (relative to the base URL, so with a trailing slash), sends
// --request (JSON) as a data part, then the same with streaming, and gets the first
// task back. It prints one JSON line, each object in its ProtoJSON form. Run by the
// Rust interop test (skills/a2a/tests/it/interop.rs); pinned in package-lock.json.
import { parseArgs } from "node:util";
import { randomUUID } from "node:crypto";

import { Message, Role, StreamResponse, Task } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";

const { values } = parseArgs({
  options: { url: { type: "string" }, request: { type: "string" } },
});
const request = JSON.parse(values.request);

const ask = () => ({
  tenant: "",
  message: Message.fromJSON({
    messageId: randomUUID(),
    role: "ROLE_USER",
    parts: [{ data: request }],
  }),
  configuration: undefined,
  metadata: undefined,
});

const client = await new ClientFactory().createFromUrl(`${values.url}/`);
const out = {};

const sent = await client.sendMessage(ask());
out.send = "status" in sent ? { task: Task.toJSON(sent) } : { message: Message.toJSON(sent) };

out.stream = [];
for await (const event of client.sendMessageStream(ask())) {
  out.stream.push(StreamResponse.toJSON(event));
}

out.get = Task.toJSON(await client.getTask({ tenant: "", id: out.send.task.id, historyLength: undefined }));
console.log(JSON.stringify(out));

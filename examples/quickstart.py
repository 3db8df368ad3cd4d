"""The library from a script: load, split, a server and two clients, a few steps, generate.

Run it with `.venv/bin/python examples/quickstart.py` (FLGLM_QUICK=1: fewer steps).
"""

import copy

from flglm_kit import (Identity, InProcessTransport, SplitClient, SplitServer, get_device, load_pretrained,
                       quick_mode, set_seed, split_model)

set_seed(0)
device = get_device()  # cuda, then mps, then cpu
tokenizer, model = load_pretrained(device=device)  # the shipped tiny GLM and its tokenizer, offline
split = split_model(model, head_layers=1, tail_layers=1)  # input block | trunk | output block
print(split.summary())

# The server holds the trunk. Each client holds its own copy of the input and output blocks and its
# own key; the server enrols each client's public key out of band, and the handshake pins the server's.
server_id = Identity.generate()
server = SplitServer(split.trunk, identity=server_id)
transport = InProcessTransport(server)
clients = []
for client_id in ["hospital-a", "hospital-b"]:
    head, tail = copy.deepcopy((split.head, split.tail))
    client = SplitClient(head, tail, client_id=client_id, transport=transport, server_fingerprint=server_id.fingerprint)
    server.enroll(client_id, client.identity.public_bytes)
    client.connect()
    clients.append(client)

# Each client's private sentences: only encrypted activations and gradients leave it.
texts = {
    "hospital-a": ["Heard a blue tit for the first time this spring.", "The lime leaves are already turning."],
    "hospital-b": ["Seek urgent help if the rash spreads.", "Regular check-ups can catch problems early."],
}
for step in range(3 if quick_mode() else 20):
    losses = []
    for client in clients:
        batch = tokenizer([tokenizer.bos_token + text + tokenizer.eos_token for text in texts[client.client_id]],
                          return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        losses.append(client.train_step(batch.input_ids, batch.attention_mask))
    print(f"step {step}: loss " + ", ".join(f"{c.client_id} {loss:.3f}" for c, loss in zip(clients, losses)))

# Greedy generation through the split: each new token is one encrypted round trip to the server.
prompt = tokenizer(tokenizer.bos_token + "Walked the mill pond", return_tensors="pt", add_special_tokens=False)
ids = clients[0].generate(prompt.input_ids.to(device), max_new_tokens=8)  # (1, T + 8)
print(tokenizer.decode(ids[0], skip_special_tokens=True))

"""The attacks recover what the literature says each observer can recover, from captured
messages and frames only, and no more than the prior where the observer sees nothing."""

from __future__ import annotations

import copy

import pytest
import torch

from flglm_kit.attacks import (GradientLabelInverter, LearnedInverter, ProbeHead, activations_of, bag_of_words,
                               bag_of_words_scores, eavesdrop, labels_from_logit_grads, nearest_neighbour_inversion,
                               next_token_labels, noise_activations, output_grads_of, peer_attack, prior_baseline,
                               score, score_bag, shipped_labels, train_gradient_inverter, train_inverter,
                               whitebox_token_matching)
from flglm_kit.client import SplitClient
from flglm_kit.crypto import Identity, InsecureChannelWarning
from flglm_kit.losses import next_token_loss
from flglm_kit.models import tiny_model
from flglm_kit.optim import default_optimizer
from flglm_kit.profiling import threads
from flglm_kit.server import SplitServer
from flglm_kit.split import Spans, split_model
from flglm_kit.transport import InProcessTransport

from conftest import make_parties

SEQ_LEN = 20
SLOTS = ((100, 300), (300, 400), (400, 500))  # private fillers: names, numbers, cities


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscribing shared CI cores (much faster there)."""
    with threads(1):
        yield


def templated_language(n, *, seed, num_templates=6):
    """``<bos> template words with 3 private slots <eos>``, right-padded to SEQ_LEN.

    Template words are ids 10..99, fixed per template; each slot takes a uniformly random
    filler, so a prior-only guesser gets template words and (almost) no private token.
    Returns ids, attention mask, and where the private tokens are.
    """
    tg = torch.Generator().manual_seed(1234)  # the language itself is fixed
    templates = []
    for _ in range(num_templates):
        length = int(torch.randint(SEQ_LEN - 8, SEQ_LEN - 1, (1,), generator=tg))
        body = torch.randint(10, 100, (length,), generator=tg).tolist()
        for slot, at in enumerate((torch.randperm(length - 2, generator=tg)[:3] + 1).tolist()):
            body[at] = -1 - slot
        templates.append([1, *body, 2])
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, SEQ_LEN, dtype=torch.long)
    private = torch.zeros(n, SEQ_LEN, dtype=torch.bool)
    mask = torch.zeros(n, SEQ_LEN, dtype=torch.long)
    for i in range(n):
        for j, tok in enumerate(templates[int(torch.randint(num_templates, (1,), generator=g))]):
            if tok < 0:
                lo, hi = SLOTS[-1 - tok]
                tok, private[i, j] = int(torch.randint(lo, hi, (1,), generator=g)), True
            ids[i, j], mask[i, j] = tok, 1
    return ids, mask, private


def batches_of(ids, mask, size):
    return [(ids[i:i + size], mask[i:i + size]) for i in range(0, len(ids), size)]


@pytest.fixture(scope="module")
def pretrained():
    """A tiny GLM trained on the templated language: the 'public pretrained checkpoint'."""
    model = tiny_model("glm", seed=0).train()
    ids, mask, _ = templated_language(2048, seed=100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(250):
        pick = torch.randint(len(ids), (32,), generator=g)
        loss = model(input_ids=ids[pick], attention_mask=mask[pick],
                     labels=ids[pick].masked_fill(mask[pick] == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1.5  # it learned the templates (the private slots stay unpredictable)
    return model.eval()


@pytest.fixture(scope="module")
def public():
    """The attacker's auxiliary text: the same language, other samples."""
    return templated_language(1024, seed=7)[:2]


@pytest.fixture(scope="module")
def private():
    return templated_language(16, seed=99)


def parties(model, *, plaintext=False, client_ids=("victim",), **layout):
    """A server and clients over the real wire; ``seen`` collects what the server decrypts."""
    p = make_parties(model, client_ids=client_ids, secure=not plaintext, optimizer=default_optimizer,
                     keep_frames=True, **layout)  # the ledger keeps what an eavesdropper reads
    return p.split, p.transport, p.clients, p.seen


# -- naive layouts (notebook 02) -----------------------------------------------------------------

def test_nearest_neighbour_recovers_every_token_from_raw_embeddings_on_the_server():
    # Prepare: the naive layout with no client block; the server knows the public table.
    model = tiny_model("glm", seed=1)
    public_table = model.model.embed_tokens.weight.detach().clone()
    ids, mask, _ = templated_language(8, seed=3)
    _, _, (client,), seen = parties(model, head_layers=0)

    # Execute: two training steps (the table moves a little after the first), then invert.
    for _ in range(2):
        client.train_step(ids, mask)
    recovered = [nearest_neighbour_inversion(obs.tensor, public_table) for obs in activations_of(seen)]

    # Assert
    assert len(recovered) == 2
    for guess in recovered:
        assert score("nn", guess, ids, mask, knowledge="embedding table").token_recovery == 1.0
    assert nearest_neighbour_inversion(activations_of(seen)[0].tensor, public_table, metric="l2").equal(recovered[0])


def test_bag_of_words_is_the_batch_token_set():
    # Prepare
    model = tiny_model("glm", seed=2)
    ids, mask, _ = templated_language(8, seed=4)
    labels = ids.masked_fill(mask == 0, -100)

    # Execute: the gradient, and a plain SGD update, of the embedding table.
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    table = model.model.embed_tokens.weight
    from_grad = bag_of_words(table.grad)
    before = table.detach().clone()
    torch.optim.SGD([table], lr=0.1).step()
    from_update = bag_of_words(table.detach() - before)

    # Assert: exactly the tokens something is predicted from (every real one but each sample's last).
    predicts = next_token_labels(ids, mask) != -100
    assert from_grad == from_update == set(ids[predicts].tolist())
    assert set(ids[mask.bool()].tolist()) - from_grad == {2}  # only <eos>, which ends every sample
    assert bag_of_words_scores(from_grad, ids[mask.bool()]).precision == 1.0
    result = score_bag("bag of words", from_grad, ids, predicts, knowledge="the update")
    assert result.precision == result.recall == result.token_recovery == 1.0


def test_labels_leak_from_logit_grads_and_from_the_tail_on_server_layout():
    # Prepare
    model = tiny_model("glm", seed=3)
    ids, mask, _ = templated_language(8, seed=5)
    split = split_model(model, head_layers=0, tail_layers=0)
    logits = split(ids, attention_mask=mask).logits.detach().requires_grad_(True)

    # Execute: (a) dL/dlogits, as a server holding the LM head would get it back;
    loss = next_token_loss(logits, ids.masked_fill(mask == 0, -100))
    (dlogits,) = torch.autograd.grad(loss, logits)
    from_grads = labels_from_logit_grads(dlogits)
    # (b) the naive layout, over the real wire.
    _, _, (client,), seen = parties(tiny_model("glm", seed=3), head_layers=0, tail_layers=0, tail_on_server=True)
    client.train_step(ids, mask)

    # Assert
    truth = next_token_labels(ids, mask)
    assert from_grads.equal(truth)
    (sent,) = shipped_labels(seen)
    assert score("shipped labels", sent, ids, mask, knowledge="none").token_recovery == 1.0


# -- what the client blocks fix and what they do not (notebook 03) -------------------------------

def test_learned_inverter_reads_tokens_after_one_client_block(pretrained, public, private):
    # Prepare: FL-GLM layout; the client trains from the public checkpoint; the server taps.
    ids, mask, secret = private
    _, _, (client,), seen = parties(pretrained, head_layers=1, tail_layers=1)
    attacker_head = split_model(pretrained, head_layers=1).head  # the public pretrained weights
    prior = prior_baseline(batches_of(*public, 64))

    # Execute
    client.train_step(ids, mask)
    client.train_step(ids, mask)
    inverter = train_inverter(attacker_head, batches_of(*public, 64), steps=250, seed=0)
    observed = activations_of(seen)[-1]  # after the client's weights moved
    learned = inverter.invert(observed.tensor)
    nearest = nearest_neighbour_inversion(observed.tensor, attacker_head.embed_tokens.weight)
    baseline = prior.predict(observed.spans)

    # Assert: far above the prior overall and on the private slots, where the prior gets nothing.
    result = score("learned", learned, ids, mask, knowledge="pretrained input block + public text",
                   baseline_ids=baseline)
    assert result.token_recovery >= 0.9 and result.baseline <= 0.4
    private_rate = {name: float((guess == ids)[secret].float().mean())
                    for name, guess in (("learned", learned), ("baseline", baseline), ("nearest", nearest))}
    assert private_rate["learned"] >= 0.8 and private_rate["baseline"] <= 0.05
    assert private_rate["nearest"] <= private_rate["learned"] - 0.3  # nearest neighbour falls after one block


def test_a_noise_aware_inverter_beats_the_noise_a_clean_one_does_not(pretrained, public, private):
    # Prepare
    ids, mask, _ = private
    head = split_model(pretrained, head_layers=1).head
    with torch.no_grad():
        noisy = noise_activations(head(ids, Spans.from_attention_mask(mask)), 1.0,
                                  generator=torch.Generator().manual_seed(0))

    # Execute
    clean = train_inverter(head, batches_of(*public, 64), steps=200, seed=0)
    aware = train_inverter(head, batches_of(*public, 64), steps=200, seed=0, noise_rel=1.0)

    # Assert
    rate = {name: score(name, inv.invert(noisy), ids, mask, knowledge="").token_recovery
            for name, inv in (("clean", clean), ("aware", aware))}
    assert rate["aware"] >= rate["clean"] + 0.15


@pytest.mark.parametrize("head_layers", [1, 2])
def test_whitebox_matching_is_exact(pretrained, private, head_layers):
    # Prepare: left padding too, so spans start past 0.
    ids, mask, _ = private
    ids, mask = ids.clone(), mask.clone()
    for i in range(4):
        shift = SEQ_LEN - int(mask[i].sum())
        ids[i], mask[i] = ids[i].roll(shift), mask[i].roll(shift)
    head = split_model(pretrained, head_layers=head_layers).head
    spans = Spans.from_attention_mask(mask)
    with torch.no_grad():
        acts = head(ids, spans)
    nearest = nearest_neighbour_inversion(acts, head.embed_tokens.weight)

    # Execute
    stats = {}
    recovered = whitebox_token_matching(acts, spans, head, stats=stats)

    # Assert: every real token, each one verified; where nearest neighbour alone got far less.
    assert score("whitebox", recovered, ids, mask, knowledge="exact input block").token_recovery == 1.0
    assert stats["unverified"] == 0 and stats["searched"] > 0
    assert score("nn", nearest, ids, mask, knowledge="").token_recovery < 0.9


def test_whitebox_matching_under_noise_takes_the_closest_candidate(pretrained, private):
    # Prepare: the noise defence: no candidate can match exactly any more.
    ids, mask, _ = private
    head = split_model(pretrained, head_layers=1).head
    spans = Spans.from_attention_mask(mask)
    with torch.no_grad():
        noisy = noise_activations(head(ids, spans), 0.1, generator=torch.Generator().manual_seed(0))

    # Execute
    stats = {}
    recovered = whitebox_token_matching(noisy, spans, head, max_candidates=64, stats=stats)

    # Assert: every position searched, none verified, at most 64 candidates each; most still right.
    assert stats["unverified"] == stats["searched"] == int(mask.sum())
    assert stats["candidates"] <= 64 * stats["searched"]
    assert score("whitebox", recovered, ids, mask, knowledge="exact input block").token_recovery >= 0.9


@pytest.mark.parametrize("family", ["glm4", "llama", "qwen2"])
def test_whitebox_matching_works_across_families(family):
    # Prepare: untrained tiny models of other families, left and right padding.
    head = split_model(tiny_model(family, seed=6), head_layers=2).head
    ids = torch.randint(3, 512, (3, 12), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(ids)
    mask[0, :4], mask[1, 9:] = 0, 0
    spans = Spans.from_attention_mask(mask)
    with torch.no_grad():
        acts = head(ids, spans)

    # Execute
    stats = {}
    recovered = whitebox_token_matching(acts, spans, head, stats=stats)

    # Assert
    assert recovered[mask.bool()].equal(ids[mask.bool()]) and stats["unverified"] == 0
    assert recovered[~mask.bool()].eq(0).all()  # padding gets pad_id


def test_gradient_label_inverter_reads_the_next_tokens_from_output_grads(pretrained, public, private):
    # Prepare: FL-GLM layout; the server sees dL/dh_B (output_grads) but never the labels.
    ids, mask, secret = private
    _, _, (client,), seen = parties(pretrained, head_layers=1, tail_layers=1)
    attacker_split = split_model(pretrained, head_layers=1, tail_layers=1)
    prior = prior_baseline(batches_of(*public, 64))

    # Execute
    client.train_step(ids, mask)
    client.train_step(ids, mask)
    inverter = train_gradient_inverter(attacker_split, batches_of(*public, 64), steps=300, seed=0)
    observed = output_grads_of(seen)  # step 1 from the public checkpoint, step 2 after the client moved
    guesses = [inverter.invert(obs.tensor) for obs in observed]

    # Assert
    truth = next_token_labels(ids, mask)
    labelled = truth != -100
    baseline = next_token_labels(prior.predict(observed[0].spans), mask)
    result = score("gradient labels", guesses, [truth] * 2, [labelled] * 2, knowledge="pretrained model + public text",
                   baseline_ids=[baseline] * 2)
    assert len(guesses) == 2 and result.token_recovery >= 0.9 and result.baseline <= 0.4
    next_private = torch.zeros_like(secret)
    next_private[:, :-1] = secret[:, 1:]
    for guess in guesses:
        assert (guess == truth)[next_private].float().mean() >= 0.8


def test_both_probes_are_one_probe_head():
    # The activation inverter and the gradient inverter share the head (and train_probe's loop).
    assert issubclass(LearnedInverter, ProbeHead) and issubclass(GradientLabelInverter, ProbeHead)
    a, b = LearnedInverter(16, 40, width=8, seed=3), LearnedInverter(16, 40, width=8, seed=3)
    assert all(p.equal(q) for p, q in zip(a.parameters(), b.parameters()))  # the seed fixes the init
    c = LearnedInverter(16, 40, width=8, seed=4)
    assert not a.mlp[0].weight.equal(c.mlp[0].weight)


@pytest.mark.parametrize("probe", ["activations", "gradients"])
def test_training_a_probe_leaves_the_global_random_generator_alone(probe):
    # Prepare: a tiny model and text, made with their own generators; then fix the global state.
    model = tiny_model("glm", seed=8)
    text = [torch.randint(3, 512, (4, 12), generator=torch.Generator().manual_seed(8))]
    torch.manual_seed(12345)
    before = torch.random.get_rng_state()

    # Execute: noise_rel draws noise too; seed differs from the global seed on purpose.
    if probe == "activations":
        train_inverter(split_model(model, head_layers=1).head, text, steps=3, seed=0, width=16, noise_rel=0.5)
    else:
        train_gradient_inverter(split_model(model, head_layers=1, tail_layers=1), text, steps=3, seed=0, width=16)

    # Assert: neither reseeded nor advanced.
    assert torch.random.get_rng_state().equal(before)


# -- peers and eavesdroppers (notebook 04) -------------------------------------------------------

@pytest.mark.parametrize("plaintext", [True, False], ids=["plaintext", "per-client keys"])
def test_a_peer_reads_plaintext_frames_and_nothing_sealed(pretrained, public, private, plaintext):
    # Prepare: two clients with the same averaged client-side weights; the peer taps the wire.
    ids, mask, _ = private
    split, transport, (victim, peer), seen = parties(pretrained, plaintext=plaintext, client_ids=("victim", "peer"),
                                                     head_layers=1, tail_layers=1)
    peer_head = copy.deepcopy(split.head)
    prior = prior_baseline(batches_of(*public, 64))

    # Execute
    victim.train_step(ids, mask)
    intercept = eavesdrop(transport.ledger)
    guesses = peer_attack(transport.ledger, "victim", input_block=peer_head, prior=prior,
                          guess_shape=tuple(ids.shape))

    # Assert
    (guess,) = guesses
    recovery = score("peer", guess.ids, ids, mask, knowledge="averaged client weights").token_recovery
    baseline = score("prior", prior.predict(ids.shape), ids, mask, knowledge="").token_recovery
    victim_frames = [r for r in transport.ledger if r.client_id == "victim"]
    if plaintext:
        assert intercept.unreadable == [] and guess.readable
        (read,) = activations_of(intercept.messages, client_id="victim")
        assert read.tensor.equal(activations_of(seen, client_id="victim")[0].tensor)  # what the server saw
        assert recovery == 1.0
    else:
        assert {m.kind for m in intercept.messages} <= {"hello", "welcome"}  # the handshake only
        assert all(r in intercept.unreadable for r in victim_frames if r.kind not in ("hello", "welcome"))
        assert not guess.readable and recovery == baseline < 0.4


def test_plaintext_channels_warn_loudly():
    split = split_model(tiny_model("glm", seed=5))
    server = SplitServer(split.trunk, identity=Identity.generate())
    client = SplitClient(split.head, split.tail, client_id="a", transport=InProcessTransport(server),
                         insecure_plaintext=True)
    with pytest.warns(InsecureChannelWarning, match="NOT encrypted"):
        server.enroll_plaintext("a")
    with pytest.warns(InsecureChannelWarning, match="NOT encrypted"):
        client.connect()


# -- defence, baseline, scoring ------------------------------------------------------------------

def test_noise_has_the_requested_relative_rms():
    acts = 3.0 * torch.randn(4, 32, 64, generator=torch.Generator().manual_seed(0))
    rms = acts.pow(2).mean().sqrt()
    for sigma_rel in (0.1, 1.0):
        noisy = noise_activations(acts, sigma_rel, generator=torch.Generator().manual_seed(1))
        measured = (noisy - acts).pow(2).mean().sqrt() / rms
        assert abs(float(measured) / sigma_rel - 1) < 0.03
    again = noise_activations(acts, 1.0, generator=torch.Generator().manual_seed(1))
    assert again.equal(noisy)  # same seed, same noise
    assert noise_activations(acts, 0.0).equal(acts)
    with pytest.raises(ValueError, match="sigma_rel"):
        noise_activations(acts, -0.1)


def test_prior_baseline_guesses_by_position_from_each_sample_start():
    prior = prior_baseline([(torch.tensor([[1, 7, 5, 0], [1, 8, 5, 0], [0, 1, 7, 6]]),
                             torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1]]))])
    left_padded = torch.tensor([[0, 1, 1, 1]])
    assert prior.predict(left_padded).tolist() == [[0, 1, 7, 5]]
    assert prior.predict((1, 5)).tolist() == [[1, 7, 5, 1, 1]]  # past the data: the most frequent token


def test_score_reports_rouge_and_entities_next_to_the_baseline():
    from flglm_kit.data import toy_tokenizer

    tok = toy_tokenizer(["patient ada byrne seen in oakby today"])
    true = torch.tensor([tok("patient ada byrne seen in oakby")["input_ids"]])
    guess = true.clone()
    guess[0, 5] = tok.convert_tokens_to_ids("today")
    result = score("toy", guess, true, knowledge="none", baseline_ids=torch.zeros_like(true), tokenizer=tok,
                   entities=[[{"type": "name", "text": "Ada Byrne"}, {"type": "city", "text": "Oakby"}]])
    assert result.token_recovery == pytest.approx(5 / 6) and result.baseline == 0.0
    assert result.entity_recovery == 0.5 and 0.8 < result.rouge_l < 1.0
    assert "tokens 83.3% vs baseline 0.0%" in repr(result)
    with pytest.raises(ValueError):
        score("bad", guess[:, :3], true, knowledge="none")

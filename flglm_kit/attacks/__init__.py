"""Reconstruction attacks on split training, each on exactly what a real observer sees.

Every attack reads only the tensors of captured messages (``SplitServer.add_tap``: what the
server decrypts) or frames (``InProcessTransport.add_tap``: what the wire carries), never a
client object, and every docstring states its THREAT MODEL and the ATTACKER'S KNOWLEDGE.
Results are reported with :func:`score` next to the prior-only baseline (:func:`prior_baseline`),
from the recovery scores :func:`token_recovery_rate`, :func:`entity_recovery_rate` and
:func:`bag_of_words_scores`. The two learned attacks are one :class:`ProbeHead` trained by one
loop, :func:`train_probe`, on pairs the attacker makes from public text.

=======================================  ======================================  ===============================
what the observer gets                   attack                                  attacker's knowledge
=======================================  ======================================  ===============================
raw embeddings (``head_layers=0``)       :func:`nearest_neighbour_inversion`     public embedding table
embedding-table gradient / update        :func:`bag_of_words`                    the update itself
labels (``tail_on_server=True``)         :func:`shipped_labels`                  nothing: they are sent
dL/dlogits (server holds the LM head)    :func:`labels_from_logit_grads`         the gradient itself
activations after k client blocks        :class:`LearnedInverter`                public pretrained input block,
                                                                                 public text
same                                     :func:`whitebox_token_matching`         the client's exact input block
dL/dh_B from the client's output block   :class:`GradientLabelInverter`          public pretrained model,
                                                                                 public text
frames on the wire                       :func:`eavesdrop`, :func:`peer_attack`  wire access (+ averaged
                                                                                 client-side weights)
nothing at all                           :func:`prior_baseline`                  public text only
=======================================  ======================================  ===============================

The defence of FedSEA-LLaMA, Gaussian noise relative to the activations' RMS, is
:func:`noise_activations` (it lives in :mod:`flglm_kit.noise`); :func:`train_inverter` with
``noise_rel`` is the attacker who knows it.

Introduced in notebook 02 (the naive layouts), 03 (what the client blocks fix and what they do not)
and 04 (peers and eavesdroppers).
"""

from flglm_kit.attacks.baseline import PriorBaseline, prior_baseline
from flglm_kit.attacks.capture import Observed, activations_of, output_grads_of, shipped_labels
from flglm_kit.attacks.eavesdrop import Intercept, PeerGuess, eavesdrop, peer_attack
from flglm_kit.attacks.gradients import (GradientLabelInverter, bag_of_words, labels_from_logit_grads,
                                         train_gradient_inverter)
from flglm_kit.attacks.inversion import LearnedInverter, nearest_neighbour_inversion, train_inverter
from flglm_kit.attacks.probe import ProbeHead, train_probe
from flglm_kit.attacks.recovery import (BagOfWordsScores, bag_of_words_scores, entity_recovery_rate,
                                       token_recovery_rate)
from flglm_kit.attacks.result import AttackResult, next_token_labels, results_table, score, score_bag
from flglm_kit.attacks.whitebox import whitebox_token_matching
from flglm_kit.noise import noise_activations

__all__ = [
    "AttackResult", "BagOfWordsScores", "GradientLabelInverter", "Intercept", "LearnedInverter", "Observed",
    "PeerGuess", "PriorBaseline", "ProbeHead", "activations_of", "bag_of_words", "bag_of_words_scores",
    "eavesdrop", "entity_recovery_rate", "labels_from_logit_grads", "nearest_neighbour_inversion",
    "next_token_labels", "noise_activations", "output_grads_of", "peer_attack", "prior_baseline",
    "results_table", "score", "score_bag", "shipped_labels", "token_recovery_rate", "train_gradient_inverter",
    "train_inverter", "train_probe", "whitebox_token_matching",
]

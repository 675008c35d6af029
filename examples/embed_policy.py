"""Embed an exported policy in your own program: plain onnxruntime + numpy, the recurrent state carried by hand.

    python examples/embed_policy.py policy.onnx --env agalite/TMaze-v0 --env-kwargs '{"corridor_length": 10}'

The step function is ``(obs[B,...], reset[B], *state) -> (logits[B,A], value[B], *new_state)``. Everything needed to
drive it is in the JSON metadata inside the file: the observation shape/dtype, and for each recurrent state tensor
its name (graph input), per-env shape, dtype, initial value and the output that carries its next value. The rules:

1. start with the initial state (``init`` of each entry, broadcast to ``[B, *shape]``);
2. each step, feed the state returned by the previous step (outputs ``new_<name>`` become inputs ``<name>``);
3. set ``reset[b] = True`` on the first observation of every episode of env ``b``: the graph clears that env's
   memory itself, so there is nothing to zero by hand between episodes.

``policy.runtime.Policy`` does exactly this (with input checks and seeded sampling); this file shows the bare steps.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort


def load(path: str) -> tuple[ort.InferenceSession, dict]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one core per policy is the fastest setting for small batches
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["agalite_rl.policy"])
    return session, metadata


def initial_state(metadata: dict, batch: int) -> dict[str, np.ndarray]:
    state = {}
    for entry in metadata["state"]:
        shape = (batch, *entry["shape"])
        if isinstance(entry["init"], list):  # a non-uniform initial value, stored flat
            one = np.asarray(entry["init"], dtype=entry["dtype"]).reshape(entry["shape"])
            state[entry["name"]] = np.broadcast_to(one, shape).copy()
        else:
            state[entry["name"]] = np.full(shape, entry["init"], dtype=entry["dtype"])
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy")
    parser.add_argument("--env", default="agalite/TMaze-v0")
    parser.add_argument("--env-kwargs", default='{"corridor_length": 10}')
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import envs  # registers this project's environment ids (torch-free)

    session, metadata = load(args.policy)
    env = envs.make_env(args.env, **json.loads(args.env_kwargs))
    rng = np.random.default_rng(args.seed)
    state = initial_state(metadata, batch=1)
    outputs = ["logits", "value"] + [entry["output"] for entry in metadata["state"]]

    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        reset = np.array([True])  # first step of the episode: the graph forgets the previous one
        done, episode_return, length = False, 0.0, 0
        while not done:
            feeds = {"obs": obs[None].astype(metadata["obs_dtype"]), "reset": reset, **state}
            logits, _value, *new_state = session.run(outputs, feeds)
            # carry the memory
            state = {entry["name"]: s for entry, s in zip(metadata["state"], new_state, strict=True)}
            probs = np.exp(logits[0] - logits[0].max())
            action = rng.choice(len(probs), p=probs / probs.sum())  # sample outside the graph, seeded
            obs, reward, terminated, truncated, info = env.step(int(action))
            episode_return += float(reward)
            length += 1
            done = terminated or truncated
            reset = np.array([False])
        print(f"episode {episode}: return {episode_return:.2f}, length {length}, success {info.get('success')}")
    env.close()


if __name__ == "__main__":
    main()

"""How far apart per-frame and joint encodings of the same frame are (the seed's train/serve gap).

Run: .venv/bin/python benchmarks/bench_vla_flow_encoding.py [--set task.image_size=[128,128] ...]

The seed trained on the frames of a window encoded together and served per-frame cached features.
This builds (or reuses) both feature caches of the default data set and compares, for every
window of the test split, the features of each window position under joint encoding with the
same frame encoded alone: relative L2 distance and cosine similarity, for the pooled visual
tokens and the instruction token. A gap well above zero means a policy trained on one and
served the other sees inputs it was not trained on.
"""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra --set")
    args = parser.parse_args()

    import numpy as np

    from qvl.config import load_config
    from qvl.plugins import load_plugins

    host = load_plugins()
    task = host.task("vla_flow")
    per_frame = host.call("build_dataset", task=task, config=load_config(task, [], args.overrides), split=args.split)
    joint = host.call("build_dataset", task=task, split=args.split,
                      config=load_config(task, [], [*args.overrides, "task.encoding=joint"]))
    frames = per_frame.config.num_frames
    distance = {"visual": [[] for _ in range(frames)], "text": [[] for _ in range(frames)]}
    cosine = {"visual": [[] for _ in range(frames)], "text": [[] for _ in range(frames)]}
    for index in range(len(per_frame)):
        alone, together = per_frame[index]["features"], joint[index]["features"]  # [frames, tokens, D]
        for position in range(frames):
            for part, rows in (("visual", slice(0, -1)), ("text", slice(-1, None))):
                a, b = alone[position, rows].ravel(), together[position, rows].ravel()
                distance[part][position].append(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-8))
                cosine[part][position].append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8)))
    print(f"{len(per_frame)} windows of the {args.split} split, {frames} frames each (oldest first)")
    for part in ("visual", "text"):
        for position in range(frames):
            print(f"{part:6s} frame {position}: relative L2 {np.mean(distance[part][position]):.3f}, "
                  f"cosine {np.mean(cosine[part][position]):.3f}")


if __name__ == "__main__":
    main()

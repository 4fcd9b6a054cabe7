"""Build a toy DEEMO-MER-style instruction set from synthetic clips (espeak-ng + astronaut photo).

    python instruction_data/build_toy.py OUT_DIR [--per-label 2]

Writes OUT_DIR/clips/*.mp4 and OUT_DIR/toy.jsonl (see instruction_data/README.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deemo_llama.sample import make_sample_clip

# label -> (sentences, espeak pitch, words per minute): higher, faster voices for aroused states.
SCRIPT = {
    "happy": (["I got the job, this is wonderful news!", "We won the game, I am thrilled!"], 70, 185),
    "sad": (["I lost my dog yesterday and I miss him.", "Nobody came to my birthday."], 30, 120),
    "angry": (["This is unacceptable, you lied to me again!", "Stop it right now, I am furious!"], 55, 190),
    "neutral": (["The meeting starts at ten in room four.", "Please put the files on the desk."], 50, 160),
}
QUESTION = "Which emotion does the person feel? Choose one of: {labels}. Then explain the cues."
ANSWERS = {
    "happy": "Emotion: happy. Reasoning: the words are enthusiastic and the voice is high and fast.",
    "sad": "Emotion: sad. Reasoning: the words describe a loss and the voice is low and slow.",
    "angry": "Emotion: angry. Reasoning: the words accuse and the voice is loud and fast.",
    "neutral": "Emotion: neutral. Reasoning: the words are factual and the voice is even.",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-label", type=int, default=2)
    args = ap.parse_args()
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    labels = ", ".join(SCRIPT)
    lines = []
    for label, (sentences, pitch, wpm) in SCRIPT.items():
        for i in range(args.per_label):
            text = sentences[i % len(sentences)]
            name = f"{label}_{i}"
            clip = args.out / "clips" / f"{name}.mp4"
            if not clip.exists():
                make_sample_clip(clip, text=text, pitch=pitch, words_per_minute=wpm)
            user = [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": f'The person says: "{text}"\n' + QUESTION.format(labels=labels)}]
            lines.append({"id": name, "media": f"clips/{name}.mp4", "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": ANSWERS[label]}]})
    tmp = args.out / "toy.jsonl.tmp"
    tmp.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    tmp.replace(args.out / "toy.jsonl")
    print(f"wrote {len(lines)} records to {args.out / 'toy.jsonl'}")


if __name__ == "__main__":
    main()

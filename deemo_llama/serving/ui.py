"""The Gradio chat UI: an OpenAI-API client of the gateway (it never touches the model directly).

Upload or record a video and/or audio clip, chat with streaming, see each expert's finding (and
each tool call the model makes) as a collapsible step, the calibrated label distribution, preview
the de-identified media, and a chart of the expression probabilities over time (from the
facial-expression expert), the experts' events and the label distribution.

    python -m deemo_llama.serving.ui --gateway http://127.0.0.1:8000/v1   (or: deemo serve)
"""

from __future__ import annotations

import base64
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from background threads

EMOTION_COLOURS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#2ca02c", "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#7f7f7f"}


def _data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def user_content(text: str, video: str | None, audio: str | None) -> list[dict] | str:
    """The latest user turn as OpenAI content parts (the media travel as data URLs)."""
    parts: list[dict] = []
    if video:
        parts.append({"type": "video_url", "video_url": {"url": _data_url(video)}})
    if audio:
        fmt = Path(audio).suffix.lstrip(".").lower() or "wav"
        parts.append({"type": "input_audio", "input_audio": {"data": base64.b64encode(Path(audio).read_bytes()).decode(), "format": fmt}})
    if not parts:
        return text
    return parts + [{"type": "text", "text": text}]


def _save_data_url(url: str, out_dir: Path, stem: str) -> str:
    header, _, payload = url.partition(",")
    ext = mimetypes.guess_extension(header[5:].split(";")[0]) or ".bin"
    path = out_dir / f"{stem}{ext}"
    path.write_bytes(base64.b64decode(payload))
    return str(path)


def estimates_figure(steps: list[dict], scores: dict[str, float] | None = None):
    """Expression probabilities over time (face expert) with the other experts' events as spans;
    beside it the label distribution the gateway chose from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scores:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.2), gridspec_kw={"width_ratios": [3, 1.3]})
        ranked = sorted(scores.items(), key=lambda kv: kv[1])
        bx.barh([k for k, _ in ranked], [v for _, v in ranked], color=[EMOTION_COLOURS.get(k, "#999999") for k, _ in ranked])
        bx.set_xlim(0, 1)
        bx.set_xlabel("label probability")
        bx.tick_params(labelsize=8)
    else:
        fig, ax = plt.subplots(figsize=(7, 3.2))
    plotted = False
    for s in steps:
        result = s.get("result") or {}
        series = (result.get("details") or {}).get("series", {}).get("probabilities")
        if series:
            t = series["t_s"]
            for label, colour in EMOTION_COLOURS.items():
                if label in series:
                    ax.plot(t, [float("nan") if v is None else v for v in series[label]], label=label, color=colour)
            plotted = True
    spans = [(e, s["name"]) for s in steps for e in ((s.get("result") or {}).get("events") or []) if "start_s" in e and "end_s" in e and s["name"] != "analyze_facial_expression"]
    for k, (e, name) in enumerate(spans[:20]):
        ax.axvspan(e["start_s"], e["end_s"], alpha=0.12, color="black")
        ax.text(e["start_s"], 0.95 - 0.07 * (k % 3), f"{e.get('kind') or e.get('type')}", fontsize=7, transform=ax.get_xaxis_transform())
    if not plotted and not spans:
        ax.text(0.5, 0.5, "no expert estimates yet (send a clip)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ax.set_xlabel("time (s)")
        ax.set_ylabel("expression probability")
        ax.set_ylim(-0.03, 1.03)
        if plotted:
            ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def _step_message(s: dict):
    from gradio import ChatMessage

    return ChatMessage(role="assistant", content=s["summary"], metadata={"title": f"{s['title']} {s['name']} ({s['status']}, {s['seconds']:.1f} s{', cached' if s.get('cached') else ''})", "status": "done"})


def corrections_message(corrected: list[dict]):
    """A collapsed note under the answer: the parts of the model's explanation that stated something
    against the Evidence, what they said and what the answer says instead."""
    from gradio import ChatMessage

    lines = [f"- {c['cue']}: the model wrote \"{c['said']}\"; the Evidence says " + (f"\"{c['now']}\"" if c["now"] else "nothing (the sentence was dropped)") for c in corrected]
    return ChatMessage(role="assistant", content="\n".join(lines), metadata={"title": f"explanation checked against the Evidence: {len(corrected)} part{'s' if len(corrected) > 1 else ''} set right", "status": "done"})


def evidence_steps(evidence: dict) -> list[dict]:
    """The Evidence record's experts as steps (same shape as the tool loop's steps)."""
    steps = [{"title": "expert", "name": n, "status": env.get("status", "ok"), "summary": env.get("summary", ""), "seconds": evidence.get("timings", {}).get(n, 0.0), "result": env} for n, env in evidence.get("experts", {}).items()]
    steps += [{"title": "expert", "name": n, "status": "error", "summary": why, "seconds": evidence.get("timings", {}).get(n, 0.0)} for n, why in evidence.get("failures", {}).items()]
    return steps


def respond(client, model: str, text: str, video: str | None, audio: str | None, experts: str, history: list[dict], convo: list[dict], tool_loop: bool = False) -> Iterator[tuple[Any, ...]]:
    """One chat turn, streamed: yields (chatbot history, preview video, preview audio, figure, convo)."""
    from gradio import ChatMessage

    scratch = Path(tempfile.mkdtemp(prefix="deemo-ui-"))
    history = list(history) + [ChatMessage(role="user", content=text or "(clip)")]
    messages = list(convo) + [{"role": "user", "content": user_content(text or "How does the person feel, and why?", video, audio)}]
    preview_video = preview_audio = None
    steps: list[dict] = []
    answer = ChatMessage(role="assistant", content="")
    history.append(answer)
    yield history, preview_video, preview_audio, None, convo
    # greedy; the gateway's server-side penalties and sentence filter keep the reasoning from looping
    stream = client.chat.completions.create(model=model, messages=messages, stream=True, max_tokens=200, temperature=0, extra_body={"deemo": {"experts": experts, "tool_loop": tool_loop, "return_media": True}})
    scores = None
    for chunk in stream:
        ext = (chunk.model_extra or {}).get("deemo") or {}
        if "evidence" in ext:
            for s in evidence_steps(ext["evidence"]):
                steps.append(s)
                history.insert(len(history) - 1, _step_message(s))
        if "scores" in ext:
            scores = ext["scores"]
            top = sorted(scores.items(), key=lambda kv: -kv[1])
            body = ", ".join(f"{k} {v:.2f}" for k, v in top)
            if ext.get("fusion"):  # fused mode: which cues drove the label, which pointed elsewhere
                body += "\n\n" + ext["fusion"]["sentence"]
            history.insert(len(history) - 1, ChatMessage(role="assistant", content=body, metadata={"title": f"label: {ext['label']} ({ext.get('mode', '')} mode, scores over {len(scores)} labels)", "status": "done"}))
        if "error" in (chunk.model_extra or {}):
            answer.content += f"\n\n**error:** {chunk.model_extra['error']['message']}"
        for m in ext.get("deidentified_media", []):
            saved = _save_data_url(m["url"], scratch, m["kind"])
            if m["kind"] == "video":
                preview_video = saved
            else:
                preview_audio = saved
        if "tool_step" in ext:
            s = {**ext["tool_step"], "title": "tool call"}
            steps.append(s)
            # a collapsible step, shown before the answer
            history.insert(len(history) - 1, _step_message(s))
        if chunk.choices and chunk.choices[0].delta.content:
            answer.content += chunk.choices[0].delta.content
        if ext.get("reasoning_corrections"):  # what the sentence filter set right, after the answer
            history.append(corrections_message(ext["reasoning_corrections"]))
        yield history, preview_video, preview_audio, None, convo
    convo = list(convo) + [{"role": "user", "content": text or "How does the person feel, and why?"}, {"role": "assistant", "content": answer.content}]
    yield history, preview_video, preview_audio, estimates_figure(steps, scores), convo


def build_ui(gateway_url: str, model: str = "deemo", api_key: str | None = None):
    """The Blocks app; launch with ``.launch()`` or mount it."""
    import gradio as gr
    from openai import OpenAI

    client = OpenAI(base_url=gateway_url, api_key=api_key or "unused", timeout=600, max_retries=0)
    with gr.Blocks(title="DEEMO: de-identified emotion understanding") as demo:
        gr.Markdown("## DEEMO\nEmotion understanding from **de-identified** video and audio: faces are blurred and voices anonymised before the model sees them; expert tools read the raw clip inside the privacy boundary and report only descriptors.")
        convo = gr.State([])
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video clip (upload or record)", sources=["upload", "webcam"], elem_id="deemo-video")
                audio = gr.Audio(label="Audio clip (upload or record)", sources=["upload", "microphone"], type="filepath", elem_id="deemo-audio")
                experts = gr.Radio(["fast", "all", "none"], value="fast", label="Experts", info="fast: facial expression + voice (real time on a CPU); all: + body language, face at full rate; none: transcript only")
                tool_loop = gr.Checkbox(False, label="Let the model call the expert tools too")
                with gr.Accordion("What the model saw (de-identified)", open=True):
                    seen_video = gr.Video(label="de-identified video", interactive=False, elem_id="deemo-seen-video")
                    seen_audio = gr.Audio(label="anonymised audio", interactive=False, type="filepath")
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="DEEMO", height=460, elem_id="deemo-chat")
                text = gr.Textbox(label="Message", placeholder="How does the person feel, and why?", elem_id="deemo-text")
                send = gr.Button("Send", variant="primary", elem_id="deemo-send")
                plot = gr.Plot(label="Expression and emotion estimates", elem_id="deemo-plot")

        def turn(message, vid, aud, mode, loop, history, state):
            yield from ((h, v, a, f, c, "") for h, v, a, f, c in respond(client, model, message, vid, aud, mode, history, state, loop))

        outputs = [chat, seen_video, seen_audio, plot, convo, text]
        inputs = [text, video, audio, experts, tool_loop, chat, convo]
        send.click(turn, inputs, outputs)
        text.submit(turn, inputs, outputs)
    return demo


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="deemo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    args = ap.parse_args()
    build_ui(args.gateway, args.model, os.environ.get("DEEMO_API_KEY")).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()

// The page of kvsgo serve: every stream with its state, a live player per
// stream (WebRTC over WHEP, or hls.js when WebRTC cannot play it), and a
// timeline of what is stored to replay a range or download a clip. Plain
// JavaScript, no build step.
"use strict";

(() => {
  const grid = document.getElementById("streams");
  const cards = new Map(); // stream name -> card
  const REFRESH_MS = 2000;
  const TIMELINE_MS = 10000;

  // Live: a segment is a whole fragment (one GOP), listed as soon as it is
  // stored, and hls.js asks for the next playlist before it exists
  // (blocking reload, _HLS_msn), so it has a fragment a few tens of
  // milliseconds after the fragment's last frame. The playhead must stay
  // more than one fragment behind the clock or it runs dry before the next
  // one lands: 1.5 target durations (1.5 s with a key frame every second)
  // leaves that margin. Playback speeds up by at most 10% to get back to
  // it, and jumps after a longer lag (a tab in the background).
  // scripts/latency measures the result (docs/BENCHMARKS.md).
  const LIVE_CONFIG = {
    lowLatencyMode: true,
    liveSyncDurationCount: 1.5,
    liveMaxLatencyDurationCount: 6,
    maxLiveSyncPlaybackRate: 1.1,
    backBufferLength: 30,
  };
  const REPLAY_CONFIG = { backBufferLength: 60 };
  // ?live=hls plays live streams over HLS only (for comparing, and for
  // tests of the HLS player).
  const LIVE_OVER = new URLSearchParams(location.search).get("live") === "hls" ? "hls" : "webrtc";
  // How long a WebRTC connection may take to show a picture before the
  // page gives up on it and plays HLS.
  const WEBRTC_START_MS = 8000;

  async function api(path, opts) {
    const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
    if (resp.status === 401) {
      location.href = "/ui/login";
      throw new Error("signed out");
    }
    return resp;
  }

  function postJSON(path, body) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtClock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtDay(ms) {
    const d = new Date(ms);
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return fmtClock(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(ms)}`;
  }
  function fmtDuration(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function fmtAge(ms) {
    if (ms == null) return "none yet";
    if (ms < 1000) return "just now";
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s ago`;
    return `${fmtDuration(ms)} ago`;
  }
  function fmtBitrate(bps) {
    if (!bps) return "–";
    if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
    return `${Math.round(bps / 1e3)} kbit/s`;
  }

  function notice(text) {
    const el = document.getElementById("notice");
    el.textContent = text || "";
    el.hidden = !text;
  }

  // --- the stream list, refreshed every two seconds -------------------------

  async function refresh() {
    let data;
    try {
      const resp = await api("/ui/api/streams");
      if (!resp.ok) throw new Error(`${resp.status} ${await resp.text()}`);
      data = await resp.json();
    } catch (err) {
      if (err.message !== "signed out") notice(`The server does not answer (${err.message}). Retrying…`);
      return;
    }
    notice("");
    document.getElementById("logout").hidden = !data.auth;
    document.getElementById("clock").textContent = `server time ${fmtClock(data.now)}`;
    document.getElementById("put-hint").textContent =
      `kvsgo put --stream porch --source testsrc --endpoint ${data.endpoint}`;
    const seen = new Set();
    for (const s of data.streams) {
      seen.add(s.name);
      let card = cards.get(s.name);
      if (!card) {
        card = newCard(s.name);
        cards.set(s.name, card);
      }
      update(card, s, data.now);
    }
    for (const [name, card] of cards) {
      if (!seen.has(name)) {
        stopPlayer(card);
        card.el.remove();
        cards.delete(name);
      }
    }
    document.getElementById("empty").hidden = data.streams.length > 0;
  }

  function newCard(name) {
    const el = document.getElementById("card").content.firstElementChild.cloneNode(true);
    el.dataset.stream = name;
    const q = (sel) => el.querySelector(sel);
    const card = {
      name, el, hls: null, pc: null, whep: null, transport: null, noWebRTC: "", behindMs: null,
      starting: false, mode: "live", live: null, sel: null, timeline: null,
      video: q("video"), overlay: q(".overlay"), overlayText: q(".overlay-text"), when: q(".when"),
      badge: q(".badge"), canvas: q(".timeline canvas"), selection: q(".selection"),
    };
    q(".name").textContent = name;
    q(".back-live").addEventListener("click", () => startLive(card));
    q(".replay").addEventListener("click", () => replay(card));
    q(".clip").addEventListener("click", () => downloadClip(card));
    card.video.addEventListener("playing", () => { card.overlay.hidden = true; });
    card.video.addEventListener("timeupdate", () => showWhen(card));
    setupTimeline(card);
    grid.appendChild(el);
    card.timer = setInterval(() => loadTimeline(card), TIMELINE_MS);
    loadTimeline(card);
    return card;
  }

  function update(card, s, now) {
    const q = (sel) => card.el.querySelector(sel);
    const wasLive = card.live;
    card.live = s.live;
    card.noWebRTC = s.noWebRTC || "";
    card.badge.textContent = s.live ? "live" : "idle";
    card.badge.className = `badge ${s.live ? "live" : "idle"}`;
    q(".bitrate").textContent = s.live ? fmtBitrate(s.bitrate) : "–";
    q(".age").textContent = fmtAge(s.lastFragmentAgeMs);
    q(".video").textContent = s.video || "–";
    q(".stored").textContent = s.firstMs ? `${fmtDuration(s.lastMs - s.firstMs)} · ${s.retentionHours} h kept` : "nothing yet";
    if (card.mode !== "live") return;
    if (s.live && !card.hls && !card.pc && !card.starting) {
      startLive(card);
    } else if (s.live && card.pc && card.noWebRTC && !card.starting) {
      // The stream can no longer be sent over WebRTC (B-frames seen).
      startLive(card);
    } else if (s.live && card.hls && card.retryWebRTC && !card.noWebRTC && !card.starting) {
      // HLS stood in while the producer was starting: WebRTC can play now.
      startLive(card);
    } else if (!s.live && wasLive !== false) {
      // No producer: nothing live to show; what is stored can be replayed.
      stopPlayer(card);
      showOverlay(card, "Not streaming", "No producer is connected. Drag across the recording below to replay a range.");
    }
  }

  // --- the player -----------------------------------------------------------

  function showOverlay(card, title, text) {
    card.overlay.hidden = false;
    card.overlayText.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    card.overlayText.append(strong, document.createTextNode(text || ""));
  }

  // showWhen tells the time of the frame on screen, from the playlist's
  // PROGRAM-DATE-TIME (the producer's clock): live, how far behind the
  // clock it is; in a replay, when it was recorded.
  function showWhen(card) {
    if (card.pc) {
      card.when.hidden = card.behindMs == null;
      if (card.behindMs != null) card.when.textContent = `${(Math.max(0, card.behindMs) / 1000).toFixed(2)} s behind live`;
      return;
    }
    const d = card.hls && card.hls.playingDate;
    if (!d) {
      card.when.hidden = true;
      return;
    }
    card.when.hidden = false;
    card.when.textContent = card.mode === "live"
      ? `${Math.max(0, (Date.now() - d.getTime()) / 1000).toFixed(1)} s behind live`
      : `recorded ${fmtDay(d.getTime())}`;
  }

  function stopPlayer(card) {
    if (card.hls) {
      card.hls.destroy();
      card.hls = null;
    }
    stopWebRTC(card);
    setTransport(card, null);
    card.video.srcObject = null;
    card.video.removeAttribute("src");
    card.video.load();
    card.when.hidden = true;
  }

  async function session(card, body) {
    const resp = await postJSON(`/ui/api/streams/${encodeURIComponent(card.name)}/hls`, body);
    const text = await resp.text();
    if (!resp.ok) return { error: text.trim() || `HTTP ${resp.status}`, status: resp.status };
    return JSON.parse(text);
  }

  // setTransport shows how the player gets its video: WebRTC, or HLS and
  // why not WebRTC.
  function setTransport(card, transport, why) {
    card.transport = transport;
    const label = card.el.querySelector(".transport");
    const line = card.el.querySelector(".live-over");
    label.hidden = !transport;
    label.textContent = transport === "webrtc" ? "WebRTC" : transport === "hls" ? "HLS" : "";
    label.className = `transport ${transport || ""}`;
    label.title = why || "";
    card.el.dataset.transport = transport || "";
    if (transport === "webrtc") line.textContent = "WebRTC (sub-second)";
    else if (transport === "hls") line.textContent = why ? `HLS: ${why}` : "HLS";
    else if (card.mode !== "live") line.textContent = "– (replaying over HLS)";
  }

  // startLive plays the live stream: over WebRTC when it can, over HLS
  // when not (B-frames, not H.264, a browser without WebRTC, a network
  // that blocks UDP), saying which.
  async function startLive(card) {
    card.mode = "live";
    card.el.querySelector(".back-live").hidden = true;
    stopPlayer(card);
    if (!card.live) {
      showOverlay(card, "Not streaming", "No producer is connected. Drag across the recording below to replay a range.");
      return;
    }
    showOverlay(card, "Connecting…", "");
    card.starting = true;
    let why = "";
    card.retryWebRTC = false;
    try {
      if (LIVE_OVER === "hls") why = "chosen in the address (?live=hls)";
      else if (card.noWebRTC) {
        why = `the live view over WebRTC is off: ${card.noWebRTC}`;
        // A producer that has just connected: WebRTC once its video comes.
        card.retryWebRTC = card.noWebRTC.includes("no video yet");
      }
      else if (!window.RTCPeerConnection) why = "this browser has no WebRTC";
      else {
        why = await startWebRTC(card);
        if (!why) return;
      }
      if (card.mode !== "live") return; // a replay began meanwhile
      await startLiveHLS(card, why);
    } finally {
      card.starting = false;
    }
  }

  async function startLiveHLS(card, why) {
    stopPlayer(card);
    let s;
    try {
      s = await session(card, { mode: "LIVE" });
    } catch (err) {
      s = { error: err.message };
    }
    if (card.mode !== "live") return;
    if (s.error) {
      // The stream list's next refresh tries again while the stream is live.
      showOverlay(card, "Live view unavailable", s.error);
      return;
    }
    play(card, s.url, true);
    setTransport(card, "hls", why);
  }

  // startWebRTC plays the stream over WebRTC (WHEP: one SDP offer, one
  // answer; no STUN or TURN: the server is on this machine or this LAN).
  // It returns "" once the picture shows, or why it could not.
  async function startWebRTC(card) {
    const pc = new RTCPeerConnection();
    card.pc = pc;
    card.behindMs = null;
    pc.addTransceiver("video", { direction: "recvonly" });
    const track = new Promise((resolve) => { pc.ontrack = resolve; });
    pc.addEventListener("connectionstatechange", () => {
      if (card.pc !== pc || card.starting) return;
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        // The server ended it (the producer switched to B-frames, or it
        // shut down) or the network did: HLS takes over.
        if (card.mode === "live" && card.live) {
          card.starting = true;
          startLiveHLS(card, `the WebRTC connection ${pc.connectionState}`).finally(() => { card.starting = false; });
        }
      }
    });
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const resp = await api(`/whep/${encodeURIComponent(card.name)}`, {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: offer.sdp });
      const answer = await resp.text();
      if (resp.status !== 201) {
        card.retryWebRTC = resp.status === 409 && answer.includes("no video yet");
        throw new Error(answer.trim() || `HTTP ${resp.status}`);
      }
      card.whep = resp.headers.get("Location");
      if (card.pc !== pc) throw new Error("stopped");
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      const ev = await within(track, WEBRTC_START_MS, "no video track arrived");
      card.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      card.video.play().catch(() => { /* autoplay waits for the media */ });
      await within(new Promise((resolve) => card.video.addEventListener("playing", resolve, { once: true })),
        WEBRTC_START_MS, `no picture within ${WEBRTC_START_MS / 1000} s (is UDP to the server blocked?)`);
      if (card.pc !== pc) throw new Error("stopped");
      setTransport(card, "webrtc");
      watchFrames(card, pc);
      return "";
    } catch (err) {
      if (card.pc === pc) stopWebRTC(card);
      return `WebRTC did not play: ${err.message}`;
    }
  }

  function within(promise, ms, what) {
    let timer;
    return Promise.race([promise, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); })])
      .finally(() => clearTimeout(timer));
  }

  // watchFrames reads how far behind live each frame on screen is: the
  // server sends every frame with its producer timestamp as RTP timestamp
  // (90 kHz, modulo 2^32), and this browser shares the producer's clock
  // when both run on one machine (or keep their clocks in sync).
  function watchFrames(card, pc) {
    const v = card.video;
    if (!v.requestVideoFrameCallback) return;
    const wrap = 2 ** 32;
    const step = (_, meta) => {
      if (card.pc !== pc) return;
      if (meta.rtpTimestamp !== undefined) {
        const shown = performance.timeOrigin + (meta.expectedDisplayTime || meta.presentationTime);
        const now = Math.round(shown * 90) % wrap;
        card.behindMs = (((now - meta.rtpTimestamp) % wrap) + wrap) % wrap / 90;
      }
      v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  }

  function stopWebRTC(card) {
    if (!card.pc) return;
    card.pc.close();
    card.pc = null;
    card.behindMs = null;
    if (card.whep) {
      // Hang up, so the server stops sending now rather than at its timeout.
      api(card.whep, { method: "DELETE", keepalive: true }).catch(() => {});
      card.whep = null;
    }
  }

  function play(card, url, live) {
    stopPlayer(card);
    const video = card.video;
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls(live ? LIVE_CONFIG : REPLAY_CONFIG);
      card.hls = hls;
      hls.on(window.Hls.Events.ERROR, (_, d) => {
        if (!d.fatal) return;
        const E = window.Hls.ErrorDetails;
        if (d.details === E.MANIFEST_INCOMPATIBLE_CODECS_ERROR || d.details === E.BUFFER_INCOMPATIBLE_CODECS_ERROR) {
          // Retrying cannot help: say so rather than "Connecting…" forever.
          showOverlay(card, "This browser cannot decode this video",
            ` (${d.reason || d.details}). H.265 plays in Safari, and in Chrome or Edge where the hardware decodes it; or download a clip (MP4) for another player.`);
          return;
        }
        if (d.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        showOverlay(card, "Playback stopped", `${d.details}. Retrying…`);
        setTimeout(() => { if (card.hls === hls) (live ? startLive(card) : play(card, url, false)); }, 3000);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    } else {
      showOverlay(card, "No HLS in this browser", "Use a current Chrome, Firefox, Edge or Safari.");
      return;
    }
    video.play().catch(() => { /* autoplay waits for the media */ });
  }

  async function replay(card) {
    if (!card.sel) return;
    const msg = card.el.querySelector(".action-msg");
    msg.textContent = "";
    const s = await session(card, { mode: "ON_DEMAND", start: card.sel[0], end: card.sel[1] });
    if (s.error) {
      msg.textContent = s.error;
      return;
    }
    card.mode = "replay";
    card.el.querySelector(".back-live").hidden = false;
    stopPlayer(card);
    showOverlay(card, "Loading the recording…", "");
    play(card, s.url, false);
  }

  async function downloadClip(card) {
    if (!card.sel) return;
    const msg = card.el.querySelector(".action-msg");
    msg.textContent = "Preparing the clip…";
    const [start, end] = card.sel;
    const resp = await api(`/ui/api/streams/${encodeURIComponent(card.name)}/clip?start=${start}&end=${end}`);
    if (!resp.ok) {
      msg.textContent = (await resp.text()).trim() || `HTTP ${resp.status}`;
      return;
    }
    const blob = await resp.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const d = new Date(start);
    a.download = `${card.name}-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.mp4`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    msg.textContent = `Clip saved (${(blob.size / 1e6).toFixed(1)} MB).`;
  }

  // --- the timeline of stored fragments --------------------------------------

  async function loadTimeline(card) {
    try {
      const resp = await api(`/ui/api/streams/${encodeURIComponent(card.name)}/timeline`);
      if (!resp.ok) return;
      card.timeline = await resp.json();
    } catch (err) {
      return;
    }
    const t = card.timeline;
    card.el.querySelector(".t-first").textContent = t.first ? fmtDay(t.first) : "";
    card.el.querySelector(".t-last").textContent = t.last ? fmtDay(t.last) : "";
    drawTimeline(card);
  }

  function drawTimeline(card) {
    const c = card.canvas;
    const w = c.clientWidth, h = c.clientHeight, dpr = window.devicePixelRatio || 1;
    if (!w || !h) return;
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    const g = c.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    const t = card.timeline;
    if (!t || !t.first || t.last <= t.first) return;
    const x = (ms) => ((ms - t.first) / (t.last - t.first)) * w;
    g.fillStyle = "#2f6fb8";
    for (const [s, e] of t.spans) g.fillRect(x(s), 6, Math.max(1.5, x(e) - x(s)), h - 12);
    if (card.sel) placeSelection(card);
  }

  function placeSelection(card) {
    const t = card.timeline;
    if (!t || !card.sel) return;
    const w = card.canvas.clientWidth;
    const x = (ms) => ((ms - t.first) / (t.last - t.first)) * w;
    card.selection.hidden = false;
    card.selection.style.left = `${x(card.sel[0])}px`;
    card.selection.style.width = `${Math.max(2, x(card.sel[1]) - x(card.sel[0]))}px`;
  }

  function setupTimeline(card) {
    const box = card.el.querySelector(".timeline");
    let from = null;
    const at = (ev) => {
      const t = card.timeline;
      const r = box.getBoundingClientRect();
      const f = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
      return Math.round(t.first + f * (t.last - t.first));
    };
    const select = (a, b) => {
      card.sel = [Math.min(a, b), Math.max(a, b)];
      if (card.sel[1] - card.sel[0] < 1000) card.sel[1] = card.sel[0] + 1000;
      // The selection in producer time (epoch ms), for scripts and tests.
      card.el.dataset.selStart = card.sel[0];
      card.el.dataset.selEnd = card.sel[1];
      placeSelection(card);
      card.el.querySelector(".range").textContent =
        `${fmtDay(card.sel[0])} → ${fmtClock(card.sel[1])} (${fmtDuration(card.sel[1] - card.sel[0])})`;
      card.el.querySelector(".replay").disabled = false;
      card.el.querySelector(".clip").disabled = false;
    };
    box.addEventListener("pointerdown", (ev) => {
      if (!card.timeline || !card.timeline.first) return;
      from = at(ev);
      box.setPointerCapture(ev.pointerId);
      select(from, from);
    });
    box.addEventListener("pointermove", (ev) => { if (from !== null) select(from, at(ev)); });
    box.addEventListener("pointerup", (ev) => { if (from !== null) select(from, at(ev)); from = null; });
    window.addEventListener("resize", () => drawTimeline(card));
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();

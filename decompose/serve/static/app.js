// The web page of `decompose serve`: chat with an agent and watch its plan run, from the API's event stream.
// Every piece of model or user text reaches the page as a text node (textContent / append(string)), never as
// markup, and the server's Content-Security-Policy forbids inline script besides.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "decompose.apiKey";  // per tab: sessionStorage is gone when the tab closes
  const STATUS_ICON = { pending: "○", running: "◔", done: "✓", failed: "✕", skipped: "↷", awaiting: "‖" };

  const state = {
    agents: [],
    agent: null,          // the selected agent's name
    conversation: null,   // the stored conversation of this chat (created on the first question)
    key: sessionStorage.getItem(KEY_STORE) || "",
    busy: false,
  };

  // ----- small DOM helpers ----------------------------------------------------------------------------------

  /** An element; `text` and string children become text nodes, so untrusted text is never parsed as HTML. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  const args = (value) => JSON.stringify(value || {}, null, 1).replace(/\n\s*/g, " ");  // one line, spaced
  const show = (value) => (typeof value === "string" ? value : JSON.stringify(value));
  const number = (n) => Number(n || 0).toLocaleString("en-US");
  const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;
  const seconds = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);

  const chip = (text, extra = "") => el("span", { class: `chip ${extra}`.trim(), text });

  /** "after #1 #2": the steps a step waits for. */
  const depsLine = (spec) => ((spec.depends_on || []).length
    ? el("p", { class: "deps" }, "after ", ...spec.depends_on.map((d) => chip(`#${d}`))) : null);

  /** A tool step's tool and its arguments. */
  const toolLine = (spec) => (spec.tool
    ? el("p", { class: "tool" }, el("span", { class: "tool-name", text: spec.tool }),
         el("code", { class: "tool-args", text: args(spec.args) }))
    : null);

  /** A program step's kind, and its program and what it printed: as text in <pre>, never as markup. */
  const kindLine = (spec) => (spec.kind === "program"
    ? el("p", { class: "tool" }, el("span", { class: "tool-name program-kind", text: "program" })) : null);

  const programBox = (step) => (typeof step.program === "string"
    ? el("details", { class: "program" },
        el("summary", { text: `program (${plural(step.program.split("\n").length, "line")})` }),
        el("pre", { class: "program-code", text: step.program }),
        step.program_output ? el("pre", { class: "program-output", text: step.program_output }) : null)
    : null);

  const errorBox = (message, hint) => el("div", { class: "run-error", role: "alert" },
    el("p", { class: "message", text: message }), hint ? el("p", { class: "hint", text: hint }) : null);

  // Follow a run as it grows, unless the reader has scrolled up to read something earlier.
  let following = true;
  $("transcript").addEventListener("scroll", () => {
    const t = $("transcript");
    following = t.scrollHeight - t.scrollTop - t.clientHeight < 60;
  });

  function scrollDown(force = false) {
    const t = $("transcript");
    if (force || following) t.scrollTop = t.scrollHeight;
  }

  function formMessage(text) {
    const box = $("form-message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // ----- the API --------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, hint) {
      super(message);
      this.status = status;
      this.hint = hint;
    }
  }

  function headers(withBody) {
    const h = {};
    if (withBody) h["Content-Type"] = "application/json";
    if (state.key) h["Authorization"] = `Bearer ${state.key}`;  // the header the API reads
    return h;
  }

  // Relative URLs: the page also works when the app is mounted under a prefix.
  async function api(method, path, body) {
    let reply;
    try {
      reply = await fetch(path, { method, headers: headers(body !== undefined),
                                  body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (exc) {
      throw new ApiError(0, "the server cannot be reached", "check that `decompose serve` is still running");
    }
    if (!reply.ok) {
      let message = `${reply.status} ${reply.statusText}`, hint = null;
      try {
        const data = await reply.json();
        if (data && data.error) ({ message, hint } = data.error);
      } catch (_) { /* not JSON: keep the status line */ }
      if (reply.status === 401) askForKey(message);
      throw new ApiError(reply.status, message, hint);
    }
    return reply;
  }

  /** The server-sent events of a streamed reply, as {name, data}. */
  async function* events(reply) {
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }  // a line starting with ":" is a keep-alive comment
        if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  // ----- API key --------------------------------------------------------------------------------------------

  function askForKey(message) {
    $("key-form").hidden = false;
    $("key-message").textContent = state.key ? message : "";
    $("api-key").focus();
  }

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORE, state.key);
    $("key-message").textContent = "";
    if (await loadAgents()) $("key-form").hidden = true;
  });

  // ----- agents ---------------------------------------------------------------------------------------------

  async function loadAgents() {
    let data;
    try {
      data = await (await api("GET", "v1/agents")).json();
    } catch (exc) {
      if (exc.status !== 401) formMessage(`Cannot list the agents: ${exc.message}`);
      return false;
    }
    formMessage("");
    state.agents = data.agents || [];
    const select = $("agent");
    select.replaceChildren(...state.agents.map((a) => el("option", { value: a.name, text: a.name })));
    select.disabled = state.agents.length === 0;
    if (state.agents.some((a) => a.name === state.agent)) select.value = state.agent;
    selectAgent(select.value);
    return true;
  }

  function selectAgent(name) {
    const changed = state.agent !== null && state.agent !== name;
    state.agent = name;
    state.conversation = null;  // a conversation belongs to one agent
    const agent = state.agents.find((a) => a.name === name) || {};
    $("agent-description").textContent = agent.description || "";
    $("agent-tools").replaceChildren(...(agent.tools && agent.tools.length
      ? ["Tools: ", ...agent.tools.map((t) => el("code", { class: "chip", text: t }))] : []));
    $("examples").replaceChildren(...(agent.examples || []).map((example) =>
      el("button", { type: "button", class: "example", text: example,
                     onclick: () => { $("question").value = example; $("question").focus(); } })));
    if (changed) {
      $("transcript").append(el("p", { class: "divider", text: `New conversation with ${name}` }));
      scrollDown();
    }
  }

  $("agent").addEventListener("change", (event) => selectAgent(event.target.value));

  $("new-chat").addEventListener("click", () => {
    state.conversation = null;
    $("transcript").replaceChildren($("intro"));
    formMessage("");
    $("question").focus();
  });

  // ----- one turn: the question, then the plan, the answer and the usage -------------------------------------

  class TurnView {
    constructor(question) {
      this.steps = [];  // the steps' state as the server last sent it (a `state` frame), in plan order
      this.plan = el("ol", { class: "plan" });
      this.status = el("span", { class: "turn-status", text: "planning…" });
      this.body = el("div", { class: "turn-body" });
      this.card = el("section", { class: "agent-card", "data-state": "running" },
        el("div", { class: "card-head" }, el("span", { class: "agent-name", text: state.agent }), this.status),
        this.body);
      this.root = el("article", { class: "turn" },
        el("div", { class: "user-bubble" }, el("p", { class: "user-question", text: question })), this.card);
      $("transcript").append(this.root);
      scrollDown(true);
    }

    setStatus(text, cardState) {
      this.status.textContent = text;
      if (cardState) this.card.dataset.state = cardState;
    }

    /** Draw the run from its event stream (see decompose/serve/sse.py for the frames). */
    async follow(reply) {
      this.body.replaceChildren(this.plan);
      this.answer = null;
      let ended = false;
      try {
        for await (const { name, data } of events(reply)) {
          this.handle(name, data);
          if (name === "result") ended = true;
        }
      } catch (exc) {
        this.showError({ message: `the event stream broke off: ${exc.message}` });
      }
      if (!ended) this.setStatus("stopped", "failed");
    }

    handle(name, data) {
      switch (name) {
        case "run": case "turn":
          this.card.dataset.runId = data.id || data.run_id || "";
          this.setStatus("planning…");
          break;
        case "PlanReady": this.setStatus("running…"); break;
        // The server folds the events into the run's state (decompose/run_state.py) and sends it after each
        // step change: the page draws it as it is, never working out a step's next state itself.
        case "state": this.steps = data.steps || []; this.draw(); break;
        case "Retried": this.note(data); break;
        case "Answered": this.showAnswer(data.answer); this.setStatus("answered"); break;
        case "error": this.showError(data.error || {}); break;
        case "result": this.finish(data); break;
        default: break;
      }
      scrollDown();
    }

    /** The plan as a tree: steps in order, each indented under the deepest step it waits for. */
    draw() {
      const depth = new Map();
      for (const step of this.steps) {
        const deps = step.depends_on || [];
        depth.set(step.id, deps.length ? 1 + Math.max(...deps.map((d) => depth.get(d) || 0)) : 0);
      }
      this.depth = depth;
      this.plan.replaceChildren(...this.steps.map((step) => this.drawStep(step)));
    }

    /** One step from its state: its question as shown (answered references resolved), status, answer, ... */
    drawStep(step) {
      const { status } = step;
      const depth = this.depth.get(step.id) || 0;
      const li = el("li", { class: `step ${status}`, "data-step-id": step.id, "data-status": status,
                            "data-depth": depth },
        el("div", { class: "step-head" },
          el("span", { class: "step-id", text: String(step.id) }),
          el("span", { class: "status", title: status },
            el("span", { class: "icon", "aria-hidden": "true", text: STATUS_ICON[status] || "?" }), status),
          el("span", { class: "step-question", text: step.shown_question || step.question,
                       title: step.shown_question && step.shown_question !== step.question ? step.question : null })),
        depsLine(step),
        toolLine(step),
        kindLine(step),
        step.answer !== undefined && step.answer !== null
          ? el("p", { class: "step-answer" }, el("span", { class: "label", text: "→ " }), show(step.answer)) : null,
        step.error ? el("p", { class: "step-error", text: step.error }) : null,
        programBox(step),
        this.stepMeta(step),
        step.sources && step.sources.length
          ? el("p", { class: "sources" }, "sources: ", ...step.sources.map((s) =>
              chip(s.score === null || s.score === undefined ? s.id : `${s.id} (${Number(s.score).toFixed(2)})`,
                   "source")))
          : null);
      li.style.setProperty("--depth", depth);  // through the CSSOM: the page's CSP refuses style attributes
      return li;
    }

    stepMeta(step) {
      const parts = [];
      if (typeof step.elapsed === "number") parts.push(seconds(step.elapsed));
      if (step.model) parts.push(step.model);
      if (step.usage && step.usage.calls) {
        parts.push(`${plural(step.usage.input + step.usage.output, "token")}, ${plural(step.usage.calls, "call")}`);
      }
      if (step.attempts > 1) parts.push(`${step.attempts} attempts`);
      if (step.vote) {  // self-consistency: the answers sampled and their votes
        parts.push(`votes: ${Object.entries(step.vote).map(([answer, n]) => `${answer} ×${n}`).join(", ")}`);
      }
      return parts.length ? el("p", { class: "step-meta", text: parts.join(" · ") }) : null;
    }

    note(retry) {
      const where = retry.step_id ? `step ${retry.step_id}` : retry.phase;
      this.body.append(el("p", { class: "retry",
        text: `retry (${retry.kind}) in ${where}, attempt ${retry.attempt}: ${retry.reason}` }));
    }

    showAnswer(answer) {
      if (!this.answer) {
        this.answer = el("div", { class: "answer" });
        this.body.append(this.answer);
      }
      this.answer.replaceChildren(el("h3", { text: "Answer" }), el("p", { class: "answer-text", text: show(answer) }));
    }

    showError(error) {
      // A failed run's hint is for whoever runs the server (it names options and flags), not for the person
      // chatting: it goes to the console.
      if (error.hint) console.info(`decompose: ${error.hint}`);
      this.body.append(errorBox(error.message || "the run failed"));
      this.setStatus("failed", "failed");
    }

    finish(result) {
      // The steps are drawn already, from the last `state` frame: the result adds the answer and the totals.
      if (result.answer !== null && result.answer !== undefined) this.showAnswer(result.answer);
      if (result.citations && result.citations.length) this.showCitations(result.citations);
      this.showUsage(result);
      if (result.ok) this.setStatus("answered", "done");
      else if (result.awaiting_approval) new ApprovalView(this, result.run_id, result.approvals);
      else if (this.card.dataset.state !== "failed") this.showError({ message: result.error || "the run failed" });
    }

    showCitations(citations) {
      (this.answer || this.body).append(el("p", { class: "citations" }, "Sources: ",
        ...citations.map((c) => {
          const used = [...(c.steps || []).map((s) => `#${s}`), ...(c.answer ? ["answer"] : [])];
          return el("span", { class: "chip source", title: used.length ? `used by ${used.join(", ")}` : null,
                              text: c.id });
        })));
    }

    showUsage(result) {
      const u = result.usage || {};
      const phases = Object.entries(u.phases || {}).map(([phase, c]) =>
        el("span", { class: "phase",
                     text: `${phase}: ${plural(c.input + c.output, "token")}, ${plural(c.calls, "call")}` }));
      const retries = (u.transport_retries || 0) + (u.parse_retries || 0);
      this.body.append(el("div", { class: "usage" },
        el("p", { class: "usage-total",
          text: [`${plural(u.total_tokens, "token")} (${number(u.input_tokens)} in, ${number(u.output_tokens)} out)`,
                 plural(u.model_calls, "model call"),
                 retries ? `${number(retries)} ${retries === 1 ? "retry" : "retries"}` : null,
                 typeof result.elapsed === "number" ? seconds(result.elapsed) : null]
            .filter(Boolean).join(" · ") }),
        phases.length ? el("p", { class: "usage-phases" }, ...phases) : null));
    }
  }

  // ----- plan review: approve, edit (step questions or the JSON), cancel --------------------------------------

  class ReviewView {
    constructor(turn, review) {
      this.turn = turn;
      this.review = review;
      this.message = el("p", { class: "review-message", role: "alert", hidden: true });
      this.json = el("textarea", { class: "plan-json", rows: 12, spellcheck: "false", "aria-label": "Plan JSON" });
      this.json.value = JSON.stringify(review.plan, null, 2);
      this.jsonBox = el("div", { class: "json-box", hidden: true }, this.json);
      this.inputs = new Map();
      const steps = el("ol", { class: "review-steps" }, ...review.plan.steps.map((spec) => {
        const input = el("input", { class: "step-input", type: "text", "aria-label": `Step ${spec.id} question` });
        input.value = spec.question;
        this.inputs.set(spec.id, input);
        return el("li", { class: "review-step", "data-step-id": spec.id },
          el("span", { class: "step-id", text: String(spec.id) }),
          el("div", { class: "review-fields" }, input, depsLine(spec), toolLine(spec)));
      }));
      this.form = el("div", { class: "review" }, el("h3", { text: "Review the plan" }),
        el("p", { class: "review-help", text: "Nothing has run yet. Edit a step's question, or the whole plan "
                                               + "as JSON, then approve it — or cancel." }),
        this.stepsBox = el("div", {}, steps), this.jsonBox, this.message,
        el("div", { class: "review-actions" },
          this.approveButton = el("button", { type: "button", class: "approve", text: "Approve and run",
                                               onclick: () => this.approve() }),
          this.jsonButton = el("button", { type: "button", class: "ghost edit-json", text: "Edit JSON",
                                            onclick: () => this.toggleJson() }),
          this.cancelButton = el("button", { type: "button", class: "ghost cancel", text: "Cancel",
                                              onclick: () => this.cancel() })));
      turn.card.dataset.runId = review.run_id;
      turn.body.replaceChildren(this.form);
      turn.setStatus("awaiting your review", "review");
    }

    toggleJson() {
      const toJson = this.jsonBox.hidden;
      if (toJson) this.json.value = JSON.stringify(this.fromInputs(), null, 2);  // carry the edits across
      this.jsonBox.hidden = !toJson;
      this.stepsBox.hidden = toJson;
      this.jsonButton.textContent = toJson ? "Edit step questions" : "Edit JSON";
    }

    fromInputs() {
      const plan = structuredClone(this.review.plan);
      for (const step of plan.steps) step.question = this.inputs.get(step.id).value;
      return plan;
    }

    say(text) {
      this.message.textContent = text;
      this.message.hidden = !text;
    }

    async approve() {
      let plan;
      if (!this.jsonBox.hidden) {
        try {
          plan = JSON.parse(this.json.value);
        } catch (exc) {
          this.say(`The plan is not valid JSON: ${exc.message}`);
          return;
        }
      } else {
        plan = this.fromInputs();
      }
      // Unchanged: approve without a body, which runs exactly the plan as reviewed.
      const edited = JSON.stringify(plan) !== JSON.stringify(this.review.plan);
      this.setButtons(true);
      this.say("");
      let reply;
      try {
        reply = await api("POST", `v1/runs/${encodeURIComponent(this.review.run_id)}/approve`,
                          edited ? { plan } : undefined);
      } catch (exc) {
        this.say(exc.hint ? `${exc.message} (${exc.hint})` : exc.message);
        this.setButtons(false);
        return;
      }
      await this.turn.follow(reply);
    }

    async cancel() {
      this.setButtons(true);
      try {  // the server marks the plan cancelled: it can never be approved afterwards
        await api("POST", `v1/runs/${encodeURIComponent(this.review.run_id)}/cancel`, {});
      } catch (exc) {
        this.say(exc.hint ? `${exc.message} (${exc.hint})` : exc.message);
        this.setButtons(false);
        return;
      }
      this.turn.body.replaceChildren(el("p", { class: "cancelled", text: "Cancelled: the plan was not run." }));
      this.turn.setStatus("cancelled", "cancelled");
    }

    setButtons(disabled) {
      for (const b of [this.approveButton, this.jsonButton, this.cancelButton]) b.disabled = disabled;
    }
  }

  // ----- tool approvals: a call waits for a person; approve, edit its arguments, or reject it ---------------

  class ApprovalView {
    constructor(turn, runId, approvals) {
      this.turn = turn;
      this.runId = runId;
      this.message = el("p", { class: "review-message", role: "alert", hidden: true });
      this.buttons = [];
      this.box = el("div", { class: "approvals" }, el("h3", { text: "Waiting for your approval" }),
        ...approvals.map((request) => this.drawRequest(request)), this.message);
      turn.body.append(this.box);
      turn.setStatus("awaiting approval", "awaiting");
    }

    /** One waiting call: the tool, its arguments and why it waits, and what a person may do about it. */
    drawRequest(request) {
      const editor = el("textarea", { class: "args-json", rows: 5, spellcheck: "false", hidden: true,
                                      "aria-label": `Step ${request.step_id} arguments` });
      editor.value = JSON.stringify(request.args, null, 2);
      const reason = el("input", { class: "reject-reason", type: "text", hidden: true,
                                   placeholder: "Why not? (the answer says so)",
                                   "aria-label": `Step ${request.step_id} rejection reason` });
      const approve = el("button", { type: "button", class: "approve", text: "Approve",
        onclick: () => this.decide(request, editor.hidden ? { decision: "approve" } : this.edited(editor)) });
      const edit = el("button", { type: "button", class: "ghost edit-args", text: "Edit",
        onclick: () => {
          editor.hidden = !editor.hidden;
          reason.hidden = true;
          approve.textContent = editor.hidden ? "Approve" : "Approve with these arguments";
        } });
      const reject = el("button", { type: "button", class: "ghost reject", text: "Reject",
        onclick: () => {
          if (reason.hidden) {  // first ask why: the answer tells the customer
            reason.hidden = false;
            editor.hidden = true;
            approve.textContent = "Approve";
            reject.textContent = "Reject with this reason";
            reason.focus();
            return;
          }
          this.decide(request, { decision: "reject", reason: reason.value.trim() || "rejected by a person" });
        } });
      this.buttons.push(approve, edit, reject);
      return el("div", { class: "approval", "data-step-id": request.step_id },
        el("p", { class: "approval-head" }, el("span", { class: "step-id", text: String(request.step_id) }),
           el("span", { class: "tool-name", text: request.tool }),
           el("code", { class: "tool-args", text: args(request.args) })),
        el("p", { class: "approval-reason", text: `Why it waits: ${request.reason}` }),
        request.expires_at
          ? el("p", { class: "approval-expiry",
                      text: `Decide before ${new Date(request.expires_at * 1000).toLocaleString()}` })
          : null,
        editor, reason,
        el("div", { class: "review-actions" }, approve, edit, reject));
    }

    /** The edited arguments as a decision, or null (and a message) when they are not a JSON object. */
    edited(editor) {
      try {
        const value = JSON.parse(editor.value);
        if (value && typeof value === "object" && !Array.isArray(value)) return { decision: "edit", args: value };
        this.say("The arguments must be a JSON object.");
      } catch (exc) {
        this.say(`The arguments are not valid JSON: ${exc.message}`);
      }
      return null;
    }

    say(text) {
      this.message.textContent = text;
      this.message.hidden = !text;
    }

    /** Send the decision; the resumed run streams into this turn, which gets its answer. */
    async decide(request, decision) {
      if (!decision) return;
      for (const b of this.buttons) b.disabled = true;
      this.say("");
      let reply;
      try {
        reply = await api("POST", `v1/runs/${encodeURIComponent(this.runId)}/decisions`,
                          { decisions: { [request.step_id]: decision } });
      } catch (exc) {
        this.say(exc.hint ? `${exc.message} (${exc.hint})` : exc.message);
        for (const b of this.buttons) b.disabled = false;
        return;
      }
      this.box.remove();
      await this.turn.follow(reply);
    }
  }

  // ----- asking ---------------------------------------------------------------------------------------------

  async function ask(question, review) {
    const turn = new TurnView(question);
    if (!state.conversation) {
      const created = await (await api("POST", "v1/conversations", { agent: state.agent })).json();
      state.conversation = created.id;
    }
    if (review) {
      // Plan only, with the chat's earlier turns; the run starts when the plan is approved, as this
      // conversation's next turn.
      const reply = await api("POST", "v1/runs?review=true", { question, conversation_id: state.conversation });
      new ReviewView(turn, await reply.json());
      return;
    }
    const reply = await api("POST", `v1/conversations/${encodeURIComponent(state.conversation)}/messages`,
                            { question });
    await turn.follow(reply);
  }

  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (state.busy) return;
    const question = $("question").value.trim();
    if (!question) {
      formMessage("Type a question first.");
      $("question").focus();
      return;
    }
    if (!state.agent) {
      formMessage("No agent to ask: the list of agents has not loaded.");
      return;
    }
    formMessage("");
    state.busy = true;
    $("ask").disabled = true;
    $("question").value = "";
    const turnsBefore = $("transcript").querySelectorAll(".turn").length;
    try {
      await ask(question, $("review").checked);
    } catch (exc) {
      const last = [...$("transcript").querySelectorAll(".turn")].pop();
      if (last && $("transcript").querySelectorAll(".turn").length > turnsBefore) {
        // The request was refused before anything ran: say why under the question, and give it back to edit.
        last.querySelector(".turn-body").replaceChildren(errorBox(exc.message, exc.hint));
        last.querySelector(".agent-card").dataset.state = "failed";
        last.querySelector(".turn-status").textContent = "refused";
      }
      formMessage(exc.message);
      $("question").value = question;
    } finally {
      state.busy = false;
      $("ask").disabled = false;
    }
  });

  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });

  if (state.key) $("api-key").value = state.key;
  loadAgents();
})();

"""The language steps around the models: planning (`decompose`, `parsing`, `plan_grammar`), the prompts, reading
answers (`answer_line`, `answer_form`, `code_block`), and the synthesis with its tool-fact guard (`synthesis`,
`tool_facts`). Import from the modules; this package re-exports nothing."""

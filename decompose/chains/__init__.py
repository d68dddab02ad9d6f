"""The chains: the prompts, reading plans and answers out of replies, the decompose chain and the synthesis."""

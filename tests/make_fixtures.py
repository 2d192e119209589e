"""Writes fixtures/foreign_wrong_paths.jsonl: wrong solutions in the styles other models write
(markdown, numbered lists, GSM8K calculator annotations, prose, LaTeX), each with the step a
careful reader marks as the first error.  Run it to regenerate the file."""

import json
from pathlib import Path

NATALIA_Q = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
             "How many clips did Natalia sell altogether in April and May?")
NATALIA_S = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
             "altogether in April and May.\n#### 72")
WENG_Q = ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
          "How much did she earn?")
WENG_S = "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"
BETTY_Q = ("Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
           "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her "
           "parents. How much more money does Betty need to buy the wallet?")
BETTY_S = ("In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 = "
           "$<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5")
JAMES_Q = "James writes a 3-page letter to 2 different friends twice a week.  How many pages does he write a year?"
JAMES_S = ("He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\n"
           "That means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624")

CASES = [
    # GPT-4 style markdown, arithmetic slip in step 2
    ("gpt-markdown", NATALIA_Q, NATALIA_S, "72",
     "**Step 1:** In April, Natalia sold 48 clips.\n\n**Step 2:** In May she sold half as many: 48 / 2 = 26 clips.\n\n"
     "**Step 3:** Altogether: 48 + 26 = 74 clips.\n\n**Final Answer:** 74", 2, "arithmetic"),
    # numbered list (Llama-2-chat style), wrong quantity (multiplies instead of halving)
    ("numbered-list", NATALIA_Q, NATALIA_S, "72",
     "Sure! Let's solve it.\n1. Natalia sold 48 clips in April.\n2. In May she sold 48 * 2 = 96 clips.\n"
     "3. In total she sold 48 + 96 = 144 clips.\nThe answer is 144.", 2, "quantity"),
    # GSM8K-style lines with calculator annotations, slip in line 2
    ("gsm8k-style", WENG_Q, WENG_S, "10",
     "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=12>>12.\n"
     "#### 12", 2, "arithmetic"),
    # plain prose paragraph, wrong reasoning in sentence 2
    ("prose", BETTY_Q, BETTY_S, "5",
     "Betty has half of $100, which is $50. Her grandparents give her 15 + 2 = $17. So she needs "
     "100 - 50 - 17 - 15 = $18 more. The answer is 18.", 2, "quantity"),
    # LaTeX arithmetic in a MetaMath-like answer
    ("latex", JAMES_Q, JAMES_S, "624",
     "Step 1: Each week he writes $3 \\times 2 = 6$ pages per round.\nStep 2: Twice a week gives "
     "$6 \\times 2 = 12$ pages.\nStep 3: Over a year, $12 \\times 52 = 604$ pages.\nThe answer is: 604", 3,
     "arithmetic"),
    # lema's own step format, right arithmetic but wrong plan (forgets the parents' money)
    ("lema-steps", BETTY_Q, BETTY_S, "5",
     "Step 1: Betty has 100 / 2 = 50 dollars.\nStep 2: Her grandparents give 15 * 2 = 30 dollars.\n"
     "Step 3: She needs 100 - 50 - 30 = 20 dollars more.\nStep 4: The answer is 20.", 3, "quantity"),
]

UNLOCALISABLE = [
    ("empty", NATALIA_Q, NATALIA_S, "72", "   "),
    ("no-numbers", NATALIA_Q, NATALIA_S, "72", "I am not sure how to solve this problem."),
]


def rows():
    out = []
    for name, q, s, a, path, step, kind in CASES:
        out.append({"id": name, "task": "gsm8k", "question": q, "gold_solution": s, "gold_answer": a, "path": path,
                    "generator": f"foreign:{name}", "expected_step": step, "expected_kind": kind})
    for name, q, s, a, path in UNLOCALISABLE:
        out.append({"id": name, "task": "gsm8k", "question": q, "gold_solution": s, "gold_answer": a, "path": path,
                    "generator": f"foreign:{name}", "expected_step": None, "expected_kind": None})
    return out


if __name__ == "__main__":
    f = Path(__file__).parent / "fixtures" / "foreign_wrong_paths.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {f}")

"""Documents between text and sentences: split a text (paragraphs, line breaks, several sentences a line) or an HTML
document into the sentences a sentence-level model translates, and put the translations back together with the
original spacing and markup. `nmt translate --split-sentences / --format html` and `nmt serve` share it."""

//! firewall.toml(5): docs/policy.md, the policy's reference, rendered as a man page, so
//! that the page and the reference are one text.
//!
//! Markdown comes in as pulldown-cmark's events; out goes roff with the man macros
//! (`.SH`, `.SS`, `.PP`, `.IP`, `.RS`/`.RE`) and tbl's tables, which man-db runs tbl on
//! because of the page's first line.
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

/// The page, from the reference's markdown; `version` goes in its footer.
pub fn policy_page(markdown: &str, version: &str) -> String {
    let mut page = Page::default();
    page.out.push_str("'\\\" t\n");
    page.out.push_str(&format!(
        ".TH FIREWALL.TOML 5 \"\" \"firewall {version}\" \"File Formats\"\n.SH NAME\n\
         firewall.toml \\- the policy file of firewall(8)\n.SH DESCRIPTION\n"
    ));
    // Ragged right, no hyphens: the tables' narrow columns cannot be justified.
    page.out.push_str(".ad l\n.nh\n");
    let options = pulldown_cmark::Options::ENABLE_TABLES;
    for event in Parser::new_ext(markdown, options) {
        page.event(event);
    }
    page.line_break();
    page.out.push_str(".SH SEE ALSO\nfirewall(8), iptables(8)\n");
    page.out
}

#[derive(Default)]
struct Page {
    out: String,
    /// The heading being read: its text goes out in one control line at its end.
    heading: Option<(HeadingLevel, String)>,
    /// Nested lists, and whether the item open in each has had a block yet.
    items: Vec<bool>,
    /// Inside a code block: every line kept as it is.
    verbatim: bool,
    /// Inside a table's cell: where a new line starts.
    in_cell: bool,
    columns: usize,
    /// After a link's text: the address, when it is one outside the docs.
    link: Option<String>,
}

impl Page {
    fn event(&mut self, event: Event<'_>) {
        if let Some((_, text)) = &mut self.heading {
            match event {
                Event::Text(t) | Event::Code(t) => text.push_str(&t),
                Event::End(TagEnd::Heading(_)) => self.end_heading(),
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) if self.verbatim => self.verbatim_text(&text),
            Event::Text(text) => self.text(&text),
            Event::Code(code) => {
                self.out.push_str("\\fB");
                self.escaped(&code.replace('\\', "\\e").replace('-', "\\-"));
                self.out.push_str("\\fR");
            }
            Event::SoftBreak | Event::HardBreak => self.line_break(),
            Event::Html(_) | Event::InlineHtml(_) | Event::Rule => {}
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => self.heading = Some((level, String::new())),
            Tag::Paragraph => self.block(".PP"),
            Tag::CodeBlock(_) => {
                self.block(".PP");
                self.control(".RS 4");
                self.control(".nf");
                self.verbatim = true;
            }
            Tag::List(_) => {
                if !self.items.is_empty() {
                    self.control(".RS 2");
                }
                self.items.push(false);
            }
            Tag::Item => {
                self.control(".IP \\(bu 2");
                if let Some(started) = self.items.last_mut() {
                    *started = false;
                }
            }
            Tag::BlockQuote(_) => self.control(".RS 4"),
            Tag::Emphasis => self.out.push_str("\\fI"),
            Tag::Strong => self.out.push_str("\\fB"),
            Tag::Link { dest_url, .. } => {
                self.link = dest_url.starts_with("http").then(|| dest_url.to_string());
            }
            Tag::Table(alignments) => {
                self.columns = alignments.len();
                self.block(".PP");
                self.control(".TS");
                self.control("tab(\t) allbox;");
                self.control(&format!("{}.", vec!["l"; self.columns].join(" ")));
            }
            Tag::TableHead | Tag::TableRow => self.line_break(),
            Tag::TableCell => {
                self.out.push_str("T{\n");
                self.in_cell = true;
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::CodeBlock => {
                self.verbatim = false;
                self.control(".fi");
                self.control(".RE");
            }
            TagEnd::List(_) => {
                self.items.pop();
                if !self.items.is_empty() {
                    self.control(".RE");
                }
            }
            TagEnd::BlockQuote(_) => self.control(".RE"),
            TagEnd::Emphasis | TagEnd::Strong => self.out.push_str("\\fR"),
            TagEnd::Link => {
                if let Some(url) = self.link.take() {
                    self.text(&format!(" <{url}>"));
                }
            }
            TagEnd::Table => self.control(".TE"),
            TagEnd::TableCell => {
                self.line_break();
                self.out.push_str("T}\t");
                self.in_cell = false;
            }
            TagEnd::TableHead | TagEnd::TableRow => {
                // The row's last tab separates nothing.
                if self.out.ends_with('\t') {
                    self.out.pop();
                }
                self.out.push('\n');
            }
            _ => {}
        }
    }

    fn end_heading(&mut self) {
        let Some((level, text)) = self.heading.take() else { return };
        match level {
            // The page's own title: NAME says it.
            HeadingLevel::H1 => {}
            HeadingLevel::H2 => self.control(&format!(".SH \"{}\"", text.to_uppercase().replace('"', ""))),
            _ => self.control(&format!(".SS \"{}\"", text.replace('"', ""))),
        }
    }

    /// A paragraph or block: in a list item, the item's first block follows its bullet.
    fn block(&mut self, macro_: &str) {
        match self.items.last_mut() {
            Some(started @ false) => *started = true,
            Some(true) => self.control(".IP \"\" 2"),
            None => self.control(macro_),
        }
    }

    fn control(&mut self, line: &str) {
        self.line_break();
        self.out.push_str(line);
        self.out.push('\n');
    }

    fn line_break(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn text(&mut self, text: &str) {
        self.escaped(&text.replace('\\', "\\e"));
    }

    /// Text already escaped, kept from reading as a control line.
    fn escaped(&mut self, escaped: &str) {
        let at_line_start = self.out.ends_with('\n');
        if at_line_start && (escaped.starts_with('.') || escaped.starts_with('\'')) {
            self.out.push_str("\\&");
        }
        self.out.push_str(escaped);
    }

    fn verbatim_text(&mut self, text: &str) {
        for line in text.lines() {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            if escaped.starts_with('.') || escaped.starts_with('\'') {
                self.out.push_str("\\&");
            }
            self.out.push_str(&escaped);
            self.out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::policy_page;

    #[test]
    fn headings_code_lists_and_tables_become_man_macros() {
        let page = policy_page(
            "# T\n\nIntro `--x`.\n\n## A key\n\n.dot\n\n```toml\nport = 22\n.x\n```\n\n- one\n- two\n  - deep\n\n\
             | a | b |\n| --- | --- |\n| 1 | 2 |\n",
            "9",
        );
        assert!(page.starts_with("'\\\" t\n.TH FIREWALL.TOML 5"), "{page}");
        assert!(page.contains("Intro \\fB\\-\\-x\\fR."), "{page}");
        assert!(page.contains(".SH \"A KEY\"\n"), "{page}");
        assert!(page.contains("\\&.dot"), "a line starting with a dot is text: {page}");
        assert!(page.contains(".nf\nport = 22\n\\&.x\n.fi"), "{page}");
        assert!(page.contains(".IP \\(bu 2\none\n"), "{page}");
        assert!(page.contains(".RS 2\n.IP \\(bu 2\ndeep\n.RE"), "{page}");
        assert!(
            page.contains(".TS\ntab(\t) allbox;\nl l.\nT{\na\nT}\tT{\nb\nT}\nT{\n1\nT}\tT{\n2\nT}\n.TE"),
            "{page}"
        );
        assert!(!page.contains("\n# T"), "{page}");
    }
}

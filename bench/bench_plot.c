/* SPDX-License-Identifier: MIT */
/* bench_plot_svg(): the rows of a run as a bar chart, hand-written SVG. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PLOT_W 1000
#define BAR_X 130
#define BAR_W 520
#define HEAD_H 110
#define SUITE_H 32
#define ROW_H 56

/* Length of the UTF-8 sequence at s, 0 when it is not a valid one. */
static int utf8_len(const unsigned char *s)
{
	int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	for (int i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* Text as XML character data: markup escaped, control characters and
 * broken UTF-8 (from /proc/cpuinfo, say) replaced. */
static void put_text(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	while (*p) {
		int n = *p < 0x80 ? 1 : utf8_len(p);
		if (n > 1) {
			fwrite(p, 1, (size_t)n, f);
			p += n;
			continue;
		}
		switch (*p) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default: fputc(*p >= 0x20 && *p < 0x7f ? *p : '?', f);
		}
		p++;
	}
}

/* "Linux 6.8.0 x86_64, CPU model, 16 CPUs" */
static void machine(char *buf, size_t len)
{
	struct utsname u;
	char cpu[160] = "unknown CPU", line[256];
	if (uname(&u) != 0)
		memset(&u, 0, sizeof(u));
	FILE *c = fopen("/proc/cpuinfo", "re");
	while (c && fgets(line, sizeof(line), c)) {
		char *colon = strchr(line, ':');
		if (!colon || (strncmp(line, "model name", 10) && strncmp(line, "Hardware", 8) &&
			       strncmp(line, "cpu model", 9)))
			continue;
		colon += 1 + strspn(colon + 1, " \t");
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(cpu, sizeof(cpu), "%s", colon);
		break;
	}
	if (c)
		fclose(c);
	snprintf(buf, len, "%s %s %s, %s, %ld CPUs", u.sysname, u.release, u.machine, cpu,
		 sysconf(_SC_NPROCESSORS_ONLN));
}

/* One bar with its value (and what it is) after it. */
static void bar(FILE *f, int y, double frac, const char *fill, const char *label, const struct bench_result *r,
		double v, const char *peer)
{
	int w = frac > 0 && frac <= 1 ? (int)(frac * BAR_W + 0.5) : 0;
	fprintf(f, "<text x=\"20\" y=\"%d\" class=\"small\">%s</text>\n", y + 10, label);
	fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"12\" fill=\"%s\"/>\n", BAR_X, y, w, fill);
	/* whole numbers up to 10^9 rather than 3.17e+03 */
	fprintf(f, v >= 1000 && v < 1e9 ? "<text x=\"%d\" y=\"%d\" class=\"small\">%.0f "
					 : "<text x=\"%d\" y=\"%d\" class=\"small\">%.3g ",
		BAR_X + w + 6, y + 10, v);
	put_text(f, r->unit);
	if (peer) {
		fputs(" (", f);
		put_text(f, peer);
		fputc(')', f);
	}
	fputs("</text>\n", f);
}

static void row(FILE *f, int y, const struct bench_result *r)
{
	bool peer = r->baseline_name[0] != '\0';
	bool goal = r->goal[0] && strcmp(r->goal, "-");
	double top = peer && r->baseline > r->value ? r->baseline : r->value;
	fputs("<g>\n<title>", f);
	put_text(f, r->name);
	fputs("</title>\n", f);
	fprintf(f, "<text x=\"20\" y=\"%d\" class=\"name\">", y + 14);
	put_text(f, r->name);
	fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" class=\"small\" text-anchor=\"end\">", PLOT_W - 20, y + 14);
	if (peer && r->ratio_name[0]) {
		put_text(f, r->ratio_name);
		fprintf(f, " %.3f \u00b7 ", r->ratio);
	}
	if (goal) {
		fputs("goal ", f);
		put_text(f, r->goal);
		fprintf(f, ": <tspan class=\"%s\">%s</tspan>", r->pass ? "met" : "missed",
			r->pass ? "met \u2713" : "not met \u2717");
	} else {
		fputs("<tspan class=\"none\">no goal</tspan>", f);
	}
	fputs("</text>\n", f);
	bar(f, y + 22, top > 0 ? r->value / top : 0, "#3366cc", "libcoherent", r, r->value, NULL);
	if (peer)
		bar(f, y + 38, top > 0 ? r->baseline / top : 0, "#999999", "peer / raw path", r, r->baseline,
		    r->baseline_name);
	else
		fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"none\">no peer measured for this row</text>\n", BAR_X,
			y + 48);
	fputs("</g>\n", f);
}

int bench_plot_svg(FILE *f, const char *title, const struct bench_result *r, int n)
{
	int suites = 0;
	for (int i = 0; i < n; i++)
		suites += i == 0 || strcmp(r[i].suite, r[i - 1].suite);
	int h = HEAD_H + suites * SUITE_H + n * ROW_H + (n ? 10 : 40);
	char mach[400], date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %z", &tm);
	machine(mach, sizeof(mach));

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		   "font-family=\"sans-serif\">\n",
		PLOT_W, h, PLOT_W, h);
	fputs("<style>\n"
	      ".title { font-size: 20px; font-weight: bold; }\n"
	      ".suite { font-size: 15px; font-weight: bold; }\n"
	      ".name { font-size: 13px; font-weight: bold; }\n"
	      ".small { font-size: 11px; }\n"
	      ".met { fill: #2e7d32; font-weight: bold; }\n"
	      ".missed { fill: #c62828; font-weight: bold; }\n"
	      ".none { fill: #777777; font-size: 11px; font-style: italic; }\n"
	      "</style>\n"
	      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
	      f);
	fputs("<text x=\"20\" y=\"32\" class=\"title\">", f);
	put_text(f, title);
	fputs("</text>\n<text x=\"20\" y=\"54\" class=\"small\">machine: ", f);
	put_text(f, mach);
	fputs("</text>\n<text x=\"20\" y=\"70\" class=\"small\">date: ", f);
	put_text(f, date);
	fputs("</text>\n", f);
	fprintf(f, "<rect x=\"20\" y=\"82\" width=\"12\" height=\"12\" fill=\"#3366cc\"/>"
		   "<text x=\"38\" y=\"92\" class=\"small\">libcoherent</text>\n"
		   "<rect x=\"120\" y=\"82\" width=\"12\" height=\"12\" fill=\"#999999\"/>"
		   "<text x=\"138\" y=\"92\" class=\"small\">peer or raw kernel path, same run</text>\n"
		   "<text x=\"%d\" y=\"92\" class=\"small\" text-anchor=\"end\">each row scaled to its larger value; "
		   "ratio as named (time x: lower is better, speed x: higher)</text>\n",
		PLOT_W - 20);
	int y = HEAD_H;
	if (!n)
		fprintf(f, "<text x=\"20\" y=\"%d\" class=\"none\">no rows: nothing measured on this machine</text>\n",
			y + 20);
	for (int i = 0; i < n; i++) {
		if (i == 0 || strcmp(r[i].suite, r[i - 1].suite)) {
			fprintf(f, "<text x=\"20\" y=\"%d\" class=\"suite\">", y + 20);
			put_text(f, r[i].suite);
			fprintf(f, "</text>\n<line x1=\"20\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#cccccc\"/>\n", y + 26,
				PLOT_W - 20, y + 26);
			y += SUITE_H;
		}
		row(f, y, &r[i]);
		y += ROW_H;
	}
	fputs("</svg>\n", f);
	return ferror(f) ? -1 : 0;
}

package plugin

import "strings"

// NSSwitchSources returns the sources the name service switch
// configuration conf (the contents of /etc/nsswitch.conf) lists for the
// database db ("hosts", "passwd", "group"), in order, without its actions
// ([NOTFOUND=return], written as one word or several). Comments are
// ignored; a database listed twice has the sources of both lines. ok is
// false when an action is not closed: the line is not read as the C
// library reads it, and callers fail closed.
func NSSwitchSources(conf, db string) (sources []string, ok bool) {
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		name, srcs, found := strings.Cut(line, ":")
		if !found || strings.TrimSpace(name) != db {
			continue
		}
		inAction := false
		for _, src := range strings.Fields(srcs) {
			if strings.HasPrefix(src, "[") {
				inAction = true
			}
			if !inAction {
				sources = append(sources, src)
			}
			if strings.HasSuffix(src, "]") {
				inAction = false
			}
		}
		if inAction {
			return nil, false
		}
	}
	return sources, true
}

package rtmfp

import "time"

// StreamState describes where a group stream's delivery stands (for a
// failing test's report).
func StreamState(ns *NetStream) string {
	g := ns.grp
	if g == nil {
		return "not a group stream"
	}
	var out string
	g.ng.call(func() {
		if g.ms == nil {
			out = "no stream"
			return
		}
		out = g.ms.st.State(time.Now())
	})
	return out
}

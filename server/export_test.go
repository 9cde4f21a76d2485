package server

// Crash stops the server as a killed process would, for the cluster
// tests: the other nodes are not told, nothing is pushed.
func (s *Server) Crash() {
	if s.node != nil {
		s.node.Kill()
	}
	s.Close()
}

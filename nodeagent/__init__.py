"""Node agent: the kubelet loop (pods as Docker containers, pod networking, status).

Entry point: ``nodeagent.agent.run_agent``; see docs/nodeagent.md for the design.
"""

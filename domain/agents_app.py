"""Agent commands (a mixin of PearlApp): register, autonomy, the kill switch, credentials."""

from __future__ import annotations

from uuid import UUID

from contracts.agents import PauseAgent, RegisterAgent, ResumeAgent, SetAutonomy
from contracts.commands import IssueApiKey
from domain.agent import Agent, agent_id
from domain.api_key import ApiKey, mint_key
from domain.authz import Action, AgentGrant, Principal, authorize
from domain.errors import Conflict
from domain.kernel import CommandResult, Idempotency, Kernel
from domain.org import Org, org_id
from domain.task_packet import TaskPacket


class AgentCommands(Kernel):
    """Agents are principals of an org with their own credentials and autonomy levels."""

    def register_agent(
        self,
        principal: Principal,
        org: str,
        cmd: RegisterAgent,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """Register an agent and issue its first credential (the token is answered once; the
        same idempotency key again answers the same ids without it)."""
        authorize(principal, Action.AGENT_MANAGE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        self.load(Org, org_id(org), f"org {org!r}")
        if self.exists(agent_id(org, cmd.slug)):
            raise Conflict(f"agent {cmd.slug!r} already exists in org {org!r}")
        agent = Agent(
            org=org,
            slug=cmd.slug,
            name=cmd.name,
            owner=cmd.owner,
            capabilities=list(cmd.capabilities),
            autonomy=dict(cmd.autonomy),
            registered_at=self.clock().isoformat(),
            actor=principal.actor,
        )
        key, token = _credential(self, agent, principal.actor)
        ids = {"org": org, "slug": cmd.slug, "id": str(agent.id), "key_id": key.key_id}
        result = self.commit(org, ids, idem, agent, key)
        return result if result.replayed else result.revealing(token)

    def issue_agent_key(
        self,
        principal: Principal,
        org: str,
        slug: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """Another credential for the agent (rotation: revoke the old key after). The same
        idempotency key again answers the same key id without its token (never shown twice)."""
        authorize(principal, Action.AGENT_MANAGE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        agent = self.load(Agent, agent_id(org, slug), f"agent {slug!r}")
        key, token = _credential(self, agent, principal.actor)
        ids = {"org": org, "slug": slug, "key_id": key.key_id}
        result = self.commit(org, ids, idem, key)
        return result if result.replayed else result.revealing(token)

    def agent_grant(self, org: str, slug: str) -> AgentGrant | None:
        """The agent's standing now (None when it was never registered)."""
        agent = self.find(Agent, agent_id(org, slug))
        return agent.grant if agent is not None else None

    def set_autonomy(
        self,
        principal: Principal,
        org: str,
        slug: str,
        cmd: SetAutonomy,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        authorize(principal, Action.AGENT_MANAGE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        agent = self.load(Agent, agent_id(org, slug), f"agent {slug!r}")
        agent.set_autonomy(cmd.environment, cmd.level, cmd.reason, principal.actor)
        ids = {"slug": slug, "environment": cmd.environment, "level": cmd.level}
        return self.commit(org, ids, idem, agent)

    def pause_agent(
        self,
        principal: Principal,
        org: str,
        slug: str,
        cmd: PauseAgent,
        held: list[UUID],
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """The kill switch: pause the agent and take back the packets it holds, in one save.

        `held` comes from the task read model; each packet is re-checked here. A claim that
        raced with the pause is taken back by the scheduler's lease sweep.
        """
        authorize(principal, Action.AGENT_MANAGE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        agent = self.load(Agent, agent_id(org, slug), f"agent {slug!r}")
        now = self.clock()
        packets = [
            p
            for p in self.load_many(TaskPacket, held).values()
            if p.org == org
            and p.revoke_lease(slug, now, f"agent paused: {cmd.reason}", principal.actor)
        ]
        released = sorted(str(p.id) for p in packets)
        agent.pause(cmd.reason, released, principal.actor)
        return self.commit(
            org, {"slug": slug, "paused": True, "released": released}, idem, agent, *packets
        )

    def resume_agent(
        self,
        principal: Principal,
        org: str,
        slug: str,
        cmd: ResumeAgent,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        authorize(principal, Action.AGENT_MANAGE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        agent = self.load(Agent, agent_id(org, slug), f"agent {slug!r}")
        agent.resume(cmd.reason, principal.actor)
        return self.commit(org, {"slug": slug, "paused": False}, idem, agent)


def _credential(host: Kernel, agent: Agent, actor: str) -> tuple[ApiKey, str]:
    """A new API key bound to the agent (unsaved) and its token."""
    key, token = mint_key(
        agent.org, IssueApiKey(name=f"agent {agent.slug}", roles=["agent"]), actor, host.clock
    )
    key.bind_agent(agent.slug, actor)
    return key, token

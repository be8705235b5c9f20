//! Who may change whose membership of a group, and what the change does: the permission matrix as a
//! pure function ([`decide`]) of the request, the actor's and the target's roles, the group's join
//! rule and what is pending for the target. No SQL: the caller ([`super::groups`]) looks these up and
//! carries the decision out.
//!
//! Joining depends on the join rule: an `open` group takes anyone, an `invite` group only whom an owner
//! or admin invited (the invitation is accepted by joining), an `approval` group records a join as a
//! request that an owner or admin accepts by adding the user. An owner's or admin's addition is direct
//! in an open group, accepts a pending request, and is otherwise an invitation: nobody becomes a member
//! of a private group without consenting. A removal of a non-member withdraws what is pending (the
//! user declines an invitation or cancels a request; an admin revokes or declines). Everyone but the
//! owner may leave; an owner or admin removes members; only the owner makes admins or takes admin
//! rights back; nobody becomes the owner through membership (`group_updated` hands a group over).

use schemas::{JoinRule, Role};

/// What a membership event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// `member_added`: a join (by the user themselves), an addition or a role change; `role` is the
    /// role asked for (none: a member, and an existing member keeps their role).
    Add { role: Option<Role> },
    /// `member_removed`: a leave (by the user themselves) or a removal.
    Remove,
}

/// Who asks, with their active role in the group (none: not a member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Actor {
    /// The user the change is about (a join or a leave): their role is the target's.
    Themselves,
    Other(Option<Role>),
}

/// What waits for a non-member's consent or an admin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    /// An owner or admin invited them.
    Invitation,
    /// They asked to join.
    Request,
}

/// The target as the group knows them: their active role (none: not a member) and what is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub role: Option<Role>,
    pub pending: Option<Pending>,
}

/// What a membership change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// The actor may not make it.
    Refused,
    /// Allowed, and nothing changes (a join of a member, a leave of a non-member, a role given again).
    Unchanged,
    /// The user becomes an active member with this role (and nothing is pending any more).
    Join(Role),
    /// An active member's role changes to this one.
    SetRole(Role),
    /// An active member leaves or is removed.
    Leave,
    /// The user is invited (by the actor).
    Invite,
    /// The user asks to join.
    Ask,
    /// What was pending for the user is withdrawn.
    Withdraw,
}

/// The decision on `request` by `actor` about `target` in a group whose join rule is `rule`.
pub(super) fn decide(request: Request, actor: Actor, target: Target, rule: JoinRule) -> Decision {
    match request {
        Request::Add { role } if target.role.is_none() => admit(role, actor, target.pending, rule),
        Request::Add { role } => {
            let wanted = role.unwrap_or(Role::Member);
            if !may_change_role(actor, target.role, wanted) {
                Decision::Refused
            } else if target.role == Some(wanted)
                || target.role == Some(Role::Owner)
                || role.is_none()
            {
                // A join or add of a member changes nothing; a role changes only when one is asked
                // for; the owner's never does.
                Decision::Unchanged
            } else {
                Decision::SetRole(wanted)
            }
        }
        Request::Remove if target.role.is_none() => withdraw(actor, target.pending),
        Request::Remove if !may_remove(actor, target.role) => Decision::Refused,
        Request::Remove => Decision::Leave,
    }
}

/// A join or addition of a non-member.
fn admit(role: Option<Role>, actor: Actor, pending: Option<Pending>, rule: JoinRule) -> Decision {
    let wanted = role.unwrap_or(Role::Member);
    match actor {
        Actor::Themselves if wanted != Role::Member => Decision::Refused,
        Actor::Themselves => match (pending, rule) {
            (Some(Pending::Invitation), _) | (_, JoinRule::Open) => Decision::Join(Role::Member),
            (Some(Pending::Request), _) => Decision::Unchanged,
            (None, JoinRule::Approval) => Decision::Ask,
            (None, JoinRule::Invite) => Decision::Refused,
        },
        Actor::Other(by) => {
            // The owner adds members and admins; an admin adds members.
            let may = match wanted {
                Role::Owner => false,
                Role::Admin => by == Some(Role::Owner),
                Role::Member => matches!(by, Some(Role::Owner | Role::Admin)),
            };
            match (may, pending, rule) {
                (false, ..) => Decision::Refused,
                (true, Some(Pending::Request), _) | (true, _, JoinRule::Open) => {
                    Decision::Join(wanted)
                }
                (true, Some(Pending::Invitation), _) => Decision::Unchanged,
                (true, None, _) => Decision::Invite,
            }
        }
    }
}

/// A removal of a non-member: the user themselves or an owner or admin withdraws what is pending.
fn withdraw(actor: Actor, pending: Option<Pending>) -> Decision {
    match (actor, pending) {
        (Actor::Other(None | Some(Role::Member)), _) => Decision::Refused,
        (_, None) => Decision::Unchanged,
        (_, Some(_)) => Decision::Withdraw,
    }
}

/// The actor's own active role.
fn role_of(actor: Actor, target: Option<Role>) -> Option<Role> {
    match actor {
        Actor::Themselves => target,
        Actor::Other(role) => role,
    }
}

/// Whether `actor` may give a member (role `target`) the role `wanted`.
fn may_change_role(actor: Actor, target: Option<Role>, wanted: Role) -> bool {
    match wanted {
        // Nobody becomes the owner (naming the owner as owner again changes nothing).
        Role::Owner => target == Some(Role::Owner),
        // A member asking to be a member changes nothing; an admin may step down.
        Role::Member if actor == Actor::Themselves => true,
        // The owner gives and takes admin rights.
        _ if role_of(actor, target) == Some(Role::Owner) => true,
        // An admin re-adds members, but does not demote another admin.
        Role::Member => role_of(actor, target) == Some(Role::Admin) && target != Some(Role::Admin),
        // Only the owner makes admins.
        Role::Admin => false,
    }
}

fn may_remove(actor: Actor, target: Option<Role>) -> bool {
    match (actor, target) {
        // The owner can neither leave nor be removed.
        (_, Some(Role::Owner)) => false,
        // Anyone may leave.
        (Actor::Themselves, _) => true,
        // The owner removes anyone; an admin removes members (not other admins).
        (Actor::Other(Some(Role::Owner)), _) => true,
        (Actor::Other(Some(Role::Admin)), Some(Role::Member) | None) => true,
        (Actor::Other(_), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the matrix for members: a request by an actor, and the decision for each role of
    /// the target (member, admin, owner). `me` is a join or leave by the user themselves.
    #[test]
    fn the_permission_matrix_of_members() {
        use Decision::{Leave, Refused as No, SetRole as Set, Unchanged as Same};
        use Role::{Admin, Member, Owner};
        let me = Actor::Themselves;
        let (stranger, member, admin, owner) = (
            Actor::Other(None),
            Actor::Other(Some(Member)),
            Actor::Other(Some(Admin)),
            Actor::Other(Some(Owner)),
        );
        let add = Request::Add { role: None };
        let add_member = Request::Add { role: Some(Member) };
        let add_admin = Request::Add { role: Some(Admin) };
        let add_owner = Request::Add { role: Some(Owner) };
        let remove = Request::Remove;
        #[rustfmt::skip]
        let matrix = [
            //                      target: member          admin             owner
            (add,        me,       [Same,             Same,             Same]),
            (add,        stranger, [No,               No,               No]),
            (add,        member,   [No,               No,               No]),
            (add,        admin,    [Same,             No,               Same]),
            (add,        owner,    [Same,             Same,             Same]),
            (add_member, me,       [Same,             Set(Member),      Same]),
            (add_member, stranger, [No,               No,               No]),
            (add_member, member,   [No,               No,               No]),
            (add_member, admin,    [Same,             No,               Same]),
            (add_member, owner,    [Same,             Set(Member),      Same]),
            (add_admin,  me,       [No,               No,               Same]),
            (add_admin,  stranger, [No,               No,               No]),
            (add_admin,  member,   [No,               No,               No]),
            (add_admin,  admin,    [No,               No,               No]),
            (add_admin,  owner,    [Set(Admin),       Same,             Same]),
            (add_owner,  me,       [No,               No,               Same]),
            (add_owner,  stranger, [No,               No,               Same]),
            (add_owner,  member,   [No,               No,               Same]),
            (add_owner,  admin,    [No,               No,               Same]),
            (add_owner,  owner,    [No,               No,               Same]),
            (remove,     me,       [Leave,            Leave,            No]),
            (remove,     stranger, [No,               No,               No]),
            (remove,     member,   [No,               No,               No]),
            (remove,     admin,    [Leave,            No,               No]),
            (remove,     owner,    [Leave,            Leave,            No]),
        ];
        for (request, actor, decisions) in matrix {
            for (role, expected) in [Member, Admin, Owner].into_iter().zip(decisions) {
                for rule in [JoinRule::Open, JoinRule::Invite, JoinRule::Approval] {
                    let target = Target {
                        role: Some(role),
                        pending: None,
                    };
                    assert_eq!(
                        decide(request, actor, target, rule),
                        expected,
                        "{request:?} by {actor:?} of a {role:?} in a {rule:?} group"
                    );
                }
            }
        }
        assert_eq!(matrix.len(), 5 * 5, "every request by every kind of actor");
    }

    /// Every way a non-member comes in or does not: the request by an actor, for each join rule and
    /// what is pending for them (nothing, an invitation, a request).
    #[test]
    fn the_admission_matrix_of_non_members() {
        use Decision::{Ask, Invite, Join, Refused as No, Unchanged as Same, Withdraw};
        use JoinRule::{Approval, Invite as InviteOnly, Open};
        use Role::{Admin, Member, Owner};
        let me = Actor::Themselves;
        let (stranger, member, admin, owner) = (
            Actor::Other(None),
            Actor::Other(Some(Member)),
            Actor::Other(Some(Admin)),
            Actor::Other(Some(Owner)),
        );
        let add = Request::Add { role: None };
        let add_admin = Request::Add { role: Some(Admin) };
        let remove = Request::Remove;
        let (none, invited, asked) = (None, Some(Pending::Invitation), Some(Pending::Request));
        #[rustfmt::skip]
        let rows = [
            // A join: open groups take anyone, an invitation is accepted, approval groups ask.
            (add, me, Open,       [Join(Member),  Join(Member),  Join(Member)]),
            (add, me, InviteOnly, [No,            Join(Member),  Same]),
            (add, me, Approval,   [Ask,           Join(Member),  Same]),
            // An addition: direct in open groups, an invitation elsewhere, accepting a request.
            (add, owner, Open,       [Join(Member), Join(Member), Join(Member)]),
            (add, owner, InviteOnly, [Invite,       Same,         Join(Member)]),
            (add, admin, Approval,   [Invite,       Same,         Join(Member)]),
            (add, member, Open,      [No,           No,           No]),
            (add, stranger, Approval,[No,           No,           No]),
            (add_admin, owner, Open,     [Join(Admin), Join(Admin), Join(Admin)]),
            (add_admin, owner, Approval, [Invite,      Same,        Join(Admin)]),
            (add_admin, admin, Open,     [No,          No,          No]),
            (add_admin, me, Open,        [No,          No,          No]),
            // A removal of a non-member withdraws what is pending.
            (remove, me, InviteOnly,     [Same, Withdraw, Withdraw]),
            (remove, admin, Approval,    [Same, Withdraw, Withdraw]),
            (remove, owner, Open,        [Same, Withdraw, Withdraw]),
            (remove, member, InviteOnly, [No,   No,       No]),
            (remove, stranger, Approval, [No,   No,       No]),
        ];
        for (request, actor, rule, decisions) in rows {
            for (pending, expected) in [none, invited, asked].into_iter().zip(decisions) {
                let target = Target {
                    role: None,
                    pending,
                };
                assert_eq!(
                    decide(request, actor, target, rule),
                    expected,
                    "{request:?} by {actor:?} in a {rule:?} group, pending {pending:?}"
                );
            }
        }
    }
}

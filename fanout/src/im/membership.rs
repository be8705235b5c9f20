//! Who may change whose membership of a group, and what the change does: the permission matrix as a
//! pure function ([`decide`]) of the request, the actor's and the target's roles. No SQL: the caller
//! ([`super::groups`]) looks the roles up and carries the decision out.
//!
//! Groups are open: anyone may join (as a member) and leave, but the owner, who cannot leave their
//! group. An owner or admin adds and removes members; only the owner makes admins or takes admin
//! rights back; nobody becomes the owner or removes them.

use schemas::Role;

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

/// What a membership change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// The actor may not make it.
    Refused,
    /// Allowed, and nothing changes (a join of a member, a leave of a non-member, a role given again).
    Unchanged,
    /// The user becomes an active member with this role.
    Join(Role),
    /// An active member's role changes to this one.
    SetRole(Role),
    /// An active member leaves or is removed.
    Leave,
}

/// The decision on `request` by `actor` about a user whose active role is `target` (none: not a
/// member).
pub(super) fn decide(request: Request, actor: Actor, target: Option<Role>) -> Decision {
    match request {
        Request::Add { role } => {
            let wanted = role.unwrap_or(Role::Member);
            if !may_add(actor, target, wanted) {
                Decision::Refused
            } else if target == Some(wanted)
                || target == Some(Role::Owner)
                || (target.is_some() && role.is_none())
            {
                // A join or add of a member changes nothing; a role changes only when one is asked
                // for; the owner's never does.
                Decision::Unchanged
            } else if target.is_none() {
                Decision::Join(wanted)
            } else {
                Decision::SetRole(wanted)
            }
        }
        Request::Remove if !may_remove(actor, target) => Decision::Refused,
        Request::Remove if target.is_none() => Decision::Unchanged,
        Request::Remove => Decision::Leave,
    }
}

/// The actor's own active role.
fn role_of(actor: Actor, target: Option<Role>) -> Option<Role> {
    match actor {
        Actor::Themselves => target,
        Actor::Other(role) => role,
    }
}

fn may_add(actor: Actor, target: Option<Role>, wanted: Role) -> bool {
    match wanted {
        // Nobody becomes the owner (naming the owner as owner again changes nothing).
        Role::Owner => target == Some(Role::Owner),
        // Groups are open.
        Role::Member if actor == Actor::Themselves => true,
        // The owner adds anyone, as a member or an admin, and takes admin rights back.
        _ if role_of(actor, target) == Some(Role::Owner) => true,
        // An admin adds members, but does not demote another admin.
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

    /// Every row of the matrix: a request by an actor, and the decision for each role of the target
    /// (not a member, member, admin, owner). `me` is a join or leave by the user themselves.
    #[test]
    fn the_permission_matrix() {
        use Decision::{Join, Leave, Refused as No, SetRole as Set, Unchanged as Same};
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
            //                      target: none          member            admin             owner
            (add,        me,       [Join(Member),        Same,             Same,             Same]),
            (add,        stranger, [No,                  No,               No,               No]),
            (add,        member,   [No,                  No,               No,               No]),
            (add,        admin,    [Join(Member),        Same,             No,               Same]),
            (add,        owner,    [Join(Member),        Same,             Same,             Same]),
            (add_member, me,       [Join(Member),        Same,             Set(Member),      Same]),
            (add_member, stranger, [No,                  No,               No,               No]),
            (add_member, member,   [No,                  No,               No,               No]),
            (add_member, admin,    [Join(Member),        Same,             No,               Same]),
            (add_member, owner,    [Join(Member),        Same,             Set(Member),      Same]),
            (add_admin,  me,       [No,                  No,               No,               Same]),
            (add_admin,  stranger, [No,                  No,               No,               No]),
            (add_admin,  member,   [No,                  No,               No,               No]),
            (add_admin,  admin,    [No,                  No,               No,               No]),
            (add_admin,  owner,    [Join(Admin),         Set(Admin),       Same,             Same]),
            (add_owner,  me,       [No,                  No,               No,               Same]),
            (add_owner,  stranger, [No,                  No,               No,               Same]),
            (add_owner,  member,   [No,                  No,               No,               Same]),
            (add_owner,  admin,    [No,                  No,               No,               Same]),
            (add_owner,  owner,    [No,                  No,               No,               Same]),
            (remove,     me,       [Same,                Leave,            Leave,            No]),
            (remove,     stranger, [No,                  No,               No,               No]),
            (remove,     member,   [No,                  No,               No,               No]),
            (remove,     admin,    [Same,                Leave,            No,               No]),
            (remove,     owner,    [Same,                Leave,            Leave,            No]),
        ];
        let targets = [None, Some(Member), Some(Admin), Some(Owner)];
        for (request, actor, decisions) in matrix {
            for (target, expected) in targets.into_iter().zip(decisions) {
                assert_eq!(
                    decide(request, actor, target),
                    expected,
                    "{request:?} by {actor:?} of a user whose role is {target:?}"
                );
            }
        }
        assert_eq!(matrix.len(), 5 * 5, "every request by every kind of actor");
    }
}

//! The combat rules as pure functions over a [`Board`]: who may act, what an attack
//! does, how the turn order moves, when a game ends and how survivors of a capped game
//! are ranked.
//!
//! Both stores run exactly this code: the embedded store applies an [`Attack`] to its
//! own board, the Redis store reads a board in one round trip, plans the attack here
//! and writes the outcome back with a compare-and-set on the turn counter.

use std::collections::BTreeMap;

use thiserror::Error;

use super::types::{GameStatus, Hero, UserToken};

/// Everything the rules need to know about one game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Board {
    pub status: GameStatus,
    /// Turn order: the player at the front acts next; the dead have left it.
    pub order: Vec<UserToken>,
    /// Every participant's hero, dead or alive.
    pub heroes: BTreeMap<UserToken, Hero>,
    /// Attacks made so far.
    pub turns: u32,
    /// Players who forfeited so far.
    pub forfeits: u32,
}

/// Why an action is refused. Nothing is written for a refused action.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("GAME NOT IN PROGRESS")]
    NotInProgress,
    #[error("USER NOT IN GAME")]
    NotInGame,
    #[error("UNKNOWN ENEMY TOKEN")]
    UnknownEnemy,
    #[error("CANNOT ATTACK SELF")]
    SelfAttack,
    #[error("NOT USER'S TURN")]
    NotYourTurn,
    #[error("ATTACKER IS DEAD")]
    AttackerDead,
    #[error("ENEMY IS DEAD")]
    EnemyDead,
    #[error("OPPONENTS STILL ALIVE")]
    OpponentsAlive,
    #[error("PLAYER NO LONGER IN PLAY")]
    OutOfPlay,
    #[error("USER ALREADY IN AN UNFINISHED GAME")]
    StillPlaying,
}

/// How a game ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// One hero is left standing.
    LastStanding(UserToken),
    /// The turn cap was reached; the survivors, best first (most health left).
    TurnCap(Vec<UserToken>),
}

/// The planned result of one attack, computed before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attack {
    pub attacker: UserToken,
    pub enemy: UserToken,
    pub damage: u64,
    pub enemy_health_prior: u64,
    pub enemy_health_post: u64,
    /// The turn order after this attack (dead enemy removed, attacker moved last).
    pub order: Vec<UserToken>,
    /// The turn counter after this attack.
    pub turns: u32,
    /// Set when this attack ends the game.
    pub finish: Option<Finish>,
}

impl Attack {
    /// Whether this attack left the enemy without health.
    pub fn enemy_died(&self) -> bool {
        self.enemy_health_post == 0
    }

    /// The status the game has after this attack.
    pub fn status(&self) -> GameStatus {
        match self.finish {
            Some(_) => GameStatus::Completed,
            None => GameStatus::InProgress,
        }
    }

    /// Whose turn it is after this attack, if anyone's.
    pub fn next_player(&self) -> Option<&UserToken> {
        match self.finish {
            Some(_) => None,
            None => self.order.first(),
        }
    }
}

/// Why a player forfeits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForfeitReason {
    /// The player did not act before the turn's deadline.
    TurnTimeout,
    /// The player's lobby connection closed while the game was running.
    LeftGame,
}

impl ForfeitReason {
    /// The reason as the log record states it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TurnTimeout => "TURN TIMEOUT",
            Self::LeftGame => "LEFT GAME",
        }
    }

    /// The reason a log record states.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TURN TIMEOUT" => Some(Self::TurnTimeout),
            "LEFT GAME" => Some(Self::LeftGame),
            _ => None,
        }
    }
}

/// The planned result of a forfeit: the player is eliminated (health 0, out of the
/// turn order) without anyone attacking, and the game goes on with the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forfeit {
    pub user: UserToken,
    pub reason: ForfeitReason,
    /// The health the player had left.
    pub health_prior: u64,
    /// The turn order after the forfeit; if it was the player's turn, the next
    /// player's turn begins (the turn counter counts attacks and does not move).
    pub order: Vec<UserToken>,
    /// The forfeit counter after this one.
    pub forfeits: u32,
    /// Set when the forfeit leaves one player standing.
    pub finish: Option<Finish>,
}

impl Forfeit {
    /// The status the game has after this forfeit.
    pub fn status(&self) -> GameStatus {
        match self.finish {
            Some(_) => GameStatus::Completed,
            None => GameStatus::InProgress,
        }
    }
}

/// Plans `user` forfeiting a game in progress. With `turn`, only if it is still
/// `user`'s turn and no attack or forfeit happened since the caller looked (a turn
/// timeout must not hit a player who acted meanwhile); without, whenever `user` is
/// still in play (a player who left).
pub fn plan_forfeit(
    board: &Board,
    user: &UserToken,
    reason: ForfeitReason,
    turn: Option<(u32, u32)>,
) -> Result<Forfeit, RuleError> {
    if board.status != GameStatus::InProgress {
        return Err(RuleError::NotInProgress);
    }
    let hero = board.heroes.get(user).ok_or(RuleError::NotInGame)?;
    if !board.order.contains(user) {
        return Err(RuleError::OutOfPlay);
    }
    if let Some(expected) = turn
        && (board.order.first() != Some(user) || (board.turns, board.forfeits) != expected)
    {
        return Err(RuleError::NotYourTurn);
    }
    let order: Vec<UserToken> = board.order.iter().filter(|p| *p != user).cloned().collect();
    let finish = match order.as_slice() {
        [winner] => Some(Finish::LastStanding(winner.clone())),
        [] => Some(Finish::TurnCap(Vec::new())),
        _ => None,
    };
    Ok(Forfeit {
        user: user.clone(),
        reason,
        health_prior: hero.health,
        order,
        forfeits: board.forfeits.saturating_add(1),
        finish,
    })
}

/// Applies a planned forfeit to the board it was planned on.
pub fn apply_forfeit(board: &mut Board, forfeit: &Forfeit) {
    if let Some(hero) = board.heroes.get_mut(&forfeit.user) {
        hero.health = 0;
    }
    board.order.clone_from(&forfeit.order);
    board.forfeits = forfeit.forfeits;
    board.status = forfeit.status();
}

/// The turn order of a game that starts: the participants' tokens sorted, as the
/// original server did.
pub fn turn_order<'a>(participants: impl IntoIterator<Item = &'a UserToken>) -> Vec<UserToken> {
    let mut order: Vec<UserToken> = participants.into_iter().cloned().collect();
    order.sort();
    order.dedup();
    order
}

/// Plans `attacker` hitting `enemy`. `turn_cap` is the number of attacks after which a
/// game ends with the survivors ranked by health (0: no cap).
pub fn plan_attack(
    board: &Board,
    attacker: &str,
    enemy: &str,
    turn_cap: u32,
) -> Result<Attack, RuleError> {
    if board.status != GameStatus::InProgress {
        return Err(RuleError::NotInProgress);
    }
    // The board's own tokens, which the attack shares.
    let (attacker, attacker_hero) = board
        .heroes
        .get_key_value(attacker)
        .ok_or(RuleError::NotInGame)?;
    let (enemy, enemy_hero) = board
        .heroes
        .get_key_value(enemy)
        .ok_or(RuleError::UnknownEnemy)?;
    if attacker == enemy {
        return Err(RuleError::SelfAttack);
    }
    if !attacker_hero.is_alive() {
        return Err(RuleError::AttackerDead);
    }
    if board.order.first() != Some(attacker) {
        return Err(RuleError::NotYourTurn);
    }
    if !enemy_hero.is_alive() {
        return Err(RuleError::EnemyDead);
    }

    let prior = enemy_hero.health;
    let post = prior.saturating_sub(attacker_hero.attack);
    let mut order: Vec<UserToken> = board.order.clone();
    if post == 0 {
        order.retain(|p| p != enemy);
    }
    order.rotate_left(1);
    let turns = board.turns.saturating_add(1);

    let finish = if order.len() <= 1 {
        Some(Finish::LastStanding(attacker.clone()))
    } else if turn_cap > 0 && turns >= turn_cap {
        Some(Finish::TurnCap(rank_survivors(board, enemy, post)))
    } else {
        None
    };

    Ok(Attack {
        attacker: attacker.clone(),
        enemy: enemy.clone(),
        damage: attacker_hero.attack,
        enemy_health_prior: prior,
        enemy_health_post: post,
        order,
        turns,
        finish,
    })
}

/// Survivors after the attack that hit the cap, most health first; ties keep the
/// token order so the ranking is deterministic.
fn rank_survivors(board: &Board, enemy: &UserToken, enemy_post: u64) -> Vec<UserToken> {
    let health = |p: &UserToken, h: &Hero| if p == enemy { enemy_post } else { h.health };
    let mut alive: Vec<(u64, &UserToken)> = board
        .heroes
        .iter()
        .map(|(p, h)| (health(p, h), p))
        .filter(|(hp, _)| *hp > 0)
        .collect();
    alive.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    alive.into_iter().map(|(_, p)| p.clone()).collect()
}

/// Applies a planned attack to the board it was planned on.
pub fn apply(board: &mut Board, attack: &Attack) {
    if let Some(hero) = board.heroes.get_mut(&attack.enemy) {
        hero.health = attack.enemy_health_post;
    }
    board.order.clone_from(&attack.order);
    board.turns = attack.turns;
    board.status = attack.status();
}

/// An action with no enemy (the original client sends a null ENEMY_TOKEN when it sees
/// no opponent left): allowed only when no opponent of `user` is alive, and it completes
/// the game. A game already completed accepts it again, so a retry gets the same reply.
pub fn plan_no_enemy(board: &Board, user: &str) -> Result<(), RuleError> {
    if !board.heroes.contains_key(user) {
        return Err(RuleError::NotInGame);
    }
    match board.status {
        GameStatus::Completed => Ok(()),
        GameStatus::InProgress => {
            let opponents_alive = board
                .heroes
                .iter()
                .any(|(p, h)| p.as_str() != user && h.is_alive());
            if opponents_alive {
                Err(RuleError::OpponentsAlive)
            } else {
                Ok(())
            }
        }
        _ => Err(RuleError::NotInProgress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(n: u8) -> UserToken {
        UserToken::from(format!("user-{n}"))
    }

    fn board(heroes: &[(u64, u64)]) -> Board {
        let heroes: BTreeMap<UserToken, Hero> = heroes
            .iter()
            .enumerate()
            .map(|(i, &(attack, health))| {
                (
                    user(i as u8),
                    Hero {
                        id: i as u32 + 1,
                        attack,
                        health,
                    },
                )
            })
            .collect();
        Board {
            status: GameStatus::InProgress,
            order: turn_order(heroes.keys()),
            heroes,
            turns: 0,
            forfeits: 0,
        }
    }

    #[test]
    fn attack_subtracts_and_rotates() {
        let b = board(&[(30, 100), (10, 100), (5, 100)]);
        let a = plan_attack(&b, &user(0), &user(2), 0).unwrap();
        assert_eq!(a.damage, 30);
        assert_eq!((a.enemy_health_prior, a.enemy_health_post), (100, 70));
        assert_eq!(a.order, vec![user(1), user(2), user(0)]);
        assert_eq!(a.turns, 1);
        assert_eq!(a.finish, None);
        assert_eq!(a.next_player(), Some(&user(1)));
    }

    #[test]
    fn health_never_goes_below_zero_and_the_dead_leave_the_order() {
        let b = board(&[(500, 100), (10, 40), (5, 100)]);
        let a = plan_attack(&b, &user(0), &user(1), 0).unwrap();
        assert_eq!(a.enemy_health_post, 0);
        assert!(a.enemy_died());
        assert_eq!(a.order, vec![user(2), user(0)]);
        assert_eq!(a.finish, None);
    }

    #[test]
    fn last_one_standing_wins() {
        let b = board(&[(500, 100), (10, 40)]);
        let a = plan_attack(&b, &user(0), &user(1), 0).unwrap();
        assert_eq!(a.finish, Some(Finish::LastStanding(user(0))));
        assert_eq!(a.status(), GameStatus::Completed);
        assert_eq!(a.next_player(), None);
    }

    #[test]
    fn refusals() {
        let mut b = board(&[(1, 100), (1, 100), (1, 100)]);
        assert_eq!(
            plan_attack(&b, &user(1), &user(2), 0),
            Err(RuleError::NotYourTurn)
        );
        assert_eq!(
            plan_attack(&b, &user(0), &user(0), 0),
            Err(RuleError::SelfAttack)
        );
        assert_eq!(
            plan_attack(&b, &user(0), &user(9), 0),
            Err(RuleError::UnknownEnemy)
        );
        assert_eq!(
            plan_attack(&b, &user(9), &user(1), 0),
            Err(RuleError::NotInGame)
        );
        b.heroes.get_mut(&user(1)).unwrap().health = 0;
        assert_eq!(
            plan_attack(&b, &user(0), &user(1), 0),
            Err(RuleError::EnemyDead)
        );
        b.heroes.get_mut(&user(0)).unwrap().health = 0;
        assert_eq!(
            plan_attack(&b, &user(0), &user(2), 0),
            Err(RuleError::AttackerDead)
        );
        b.status = GameStatus::Completed;
        assert_eq!(
            plan_attack(&b, &user(0), &user(2), 0),
            Err(RuleError::NotInProgress)
        );
    }

    #[test]
    fn turn_cap_ranks_survivors_by_health() {
        let mut b = board(&[(1, 1_000), (1, 5_000), (1, 3_000)]);
        b.turns = 9;
        let a = plan_attack(&b, &user(0), &user(1), 10).unwrap();
        assert_eq!(
            a.finish,
            Some(Finish::TurnCap(vec![user(1), user(2), user(0)]))
        );
        assert_eq!(a.status(), GameStatus::Completed);
    }

    #[test]
    fn a_forfeit_eliminates_and_passes_the_turn() {
        let b = board(&[(1, 100), (1, 100), (1, 100)]);
        let timeout = ForfeitReason::TurnTimeout;
        // Only the player whose turn it is, and only at the turn the caller saw.
        assert_eq!(
            plan_forfeit(&b, &user(1), timeout, Some((0, 0))),
            Err(RuleError::NotYourTurn)
        );
        assert_eq!(
            plan_forfeit(&b, &user(0), timeout, Some((1, 0))),
            Err(RuleError::NotYourTurn)
        );
        let f = plan_forfeit(&b, &user(0), timeout, Some((0, 0))).unwrap();
        assert_eq!(f.order, vec![user(1), user(2)]);
        assert_eq!(
            (f.forfeits, f.health_prior, f.finish.clone()),
            (1, 100, None)
        );
        let mut after = b.clone();
        apply_forfeit(&mut after, &f);
        assert_eq!(after.heroes[&user(0)].health, 0);
        assert_eq!(after.turns, 0, "a forfeit is not an attack");
        // A player who left forfeits whenever it is; the last one standing wins.
        let left = plan_forfeit(&after, &user(2), ForfeitReason::LeftGame, None).unwrap();
        assert_eq!(left.finish, Some(Finish::LastStanding(user(1))));
        apply_forfeit(&mut after, &left);
        assert_eq!(after.status, GameStatus::Completed);
        assert_eq!(
            plan_forfeit(&after, &user(1), ForfeitReason::LeftGame, None),
            Err(RuleError::NotInProgress)
        );
        after.status = GameStatus::InProgress;
        assert_eq!(
            plan_forfeit(&after, &user(0), ForfeitReason::LeftGame, None),
            Err(RuleError::OutOfPlay)
        );
    }

    #[test]
    fn no_enemy_completes_only_when_alone() {
        let mut b = board(&[(1, 10), (1, 10)]);
        assert_eq!(plan_no_enemy(&b, &user(0)), Err(RuleError::OpponentsAlive));
        b.heroes.get_mut(&user(1)).unwrap().health = 0;
        assert_eq!(plan_no_enemy(&b, &user(0)), Ok(()));
        assert_eq!(plan_no_enemy(&b, &user(7)), Err(RuleError::NotInGame));
    }

    /// Plays a whole game by the rules, always attacking the first living opponent.
    fn play_out(mut b: Board, cap: u32) -> (Board, Finish, Vec<UserToken>) {
        let mut eliminated = Vec::new();
        loop {
            let me = b.order[0].clone();
            let enemy = b
                .order
                .iter()
                .find(|p| **p != me)
                .cloned()
                .expect("an opponent while the game runs");
            let a = plan_attack(&b, &me, &enemy, cap).expect("a legal attack");
            if a.enemy_died() {
                eliminated.push(enemy.clone());
            }
            apply(&mut b, &a);
            if let Some(f) = a.finish {
                return (b, f, eliminated);
            }
        }
    }

    proptest! {
        #[test]
        fn attack_arithmetic(attack in 0u64..2_000_000, health in 1u64..20_000_000) {
            let b = board(&[(attack, 10), (1, health)]);
            let a = plan_attack(&b, &user(0), &user(1), 0).unwrap();
            prop_assert_eq!(a.damage, attack);
            prop_assert_eq!(a.enemy_health_prior, health);
            prop_assert_eq!(a.enemy_health_post, health.saturating_sub(attack));
        }

        #[test]
        fn games_end_with_one_winner_or_at_the_cap(
            stats in proptest::collection::vec((1u64..50, 1u64..400), 2..=5),
            cap in 0u32..60,
        ) {
            let b = board(&stats);
            let n = b.heroes.len();
            let (end, finish, eliminated) = play_out(b, cap);
            prop_assert_eq!(end.status, GameStatus::Completed);
            prop_assert!(cap == 0 || end.turns <= cap);
            let alive: Vec<&UserToken> =
                end.heroes.iter().filter(|(_, h)| h.is_alive()).map(|(p, _)| p).collect();
            prop_assert_eq!(alive.len() + eliminated.len(), n);
            match finish {
                Finish::LastStanding(w) => {
                    prop_assert_eq!(alive, vec![&w]);
                    prop_assert_eq!(end.order, vec![w]);
                }
                Finish::TurnCap(ranking) => {
                    prop_assert_eq!(end.turns, cap);
                    prop_assert_eq!(ranking.len(), alive.len());
                    let hp: Vec<u64> = ranking.iter().map(|p| end.heroes[p].health).collect();
                    prop_assert!(hp.windows(2).all(|w| w[0] >= w[1]));
                }
            }
        }

        #[test]
        fn rotation_keeps_every_living_player_once(
            stats in proptest::collection::vec((1u64..5, 50u64..100), 3..=6),
        ) {
            let b = board(&stats);
            let me = b.order[0].clone();
            let enemy = b.order[1].clone();
            let a = plan_attack(&b, &me, &enemy, 0).unwrap();
            prop_assert_eq!(a.order.len(), b.order.len());
            prop_assert_eq!(a.order.last(), Some(&me));
            prop_assert_eq!(&a.order[..], &[&b.order[1..], &b.order[..1]].concat()[..]);
        }
    }
}

(** The accelerators' empirical claims, stated and NOT proven.

    Each claim is about measurements of real training runs, which Coq cannot see. The
    measurements are declared as [Parameter]s (uninterpreted constants: the world supplies
    them) and each claim is a theorem about them closed with [Admitted]. Both show up in
    [Print Assumptions], so the audit reports every claim here as not closed: its evidence is
    the runtime verdict and the study named in assertions/igla_assertions.json, never Coq.
    Every statement is satisfiable (e.g. all slopes zero, no trial pruned, zero regret), so
    admitting it cannot make the development inconsistent. *)

From Coq Require Import QArith Qabs ZArith List Reals.
Import ListNotations.

Inductive family := Attn | Jepa | Hybrid.

(** --- INV-13 (V1): muP makes the learning rate transfer across width. --- *)

(** Fitted log-log slope of mean |activation| against width, per family, layer and step. *)
Parameter coord_slope : family -> nat -> nat -> Q.
(** Index of the best learning rate on the 2x-spaced sweep grid, per family and width. *)
Parameter best_lr_index : family -> nat -> Z.
(** Width of the tiny proxy the sweep runs at (8 or 16). *)
Parameter proxy_width : nat.
(** Pre-registered bound on |slope| (mup_slope_max in assertions/preregistration.json). *)
Parameter mup_slope_max : Q.

Theorem mup_lr_transfer_invariant :
  forall f : family,
    (forall layer t, Qabs (coord_slope f layer t) <= mup_slope_max)
    /\ (forall w, In w [128; 256]%nat ->
          (Z.abs (best_lr_index f w - best_lr_index f proxy_width) <= 1)%Z).
Admitted.

(** --- INV-14 (V2): zero-cost proxies predict rung BPB better than parameter count. --- *)

(** Spearman rho against rung-2 BPB on the held-out study configs. *)
Parameter rho_ensemble : Q.
Parameter rho_param_count : Q.
(** Pre-registered floor (proxy_rho_min in assertions/preregistration.json). *)
Parameter proxy_rho_min : Q.

Theorem zero_cost_correlation_floor :
  proxy_rho_min <= Qabs rho_ensemble /\ Qabs rho_param_count < Qabs rho_ensemble.
Admitted.

(** --- INV-15 (V4): surrogate pruning loses no winner. --- *)

(** Holdout trials (run to the end whatever the surrogate says), its decision, final BPB. *)
Parameter holdout : list nat.
Parameter would_prune : nat -> bool.
Parameter final_bpb : nat -> Q.

Theorem surrogate_pruning_no_regret :
  forall t, In t holdout -> would_prune t = true ->
    exists k, In k holdout /\ would_prune k = false /\ final_bpb k <= final_bpb t.
Admitted.

(** --- INV-16 (V6): UCB over architectures has sublinear regret. --- *)

(** Cumulative regret (BPB above the best arm in hindsight) after T allocations. UCB1's
    bound (Auer et al. 2002) assumes i.i.d. bounded rewards; training curves are not that,
    so here it is an empirical claim. *)
Parameter ucb_regret : nat -> R.

Theorem ucb_arch_no_regret :
  exists C : R, forall T : nat, (2 <= T)%nat ->
    (ucb_regret T <= C * sqrt (INR T * ln (INR T)))%R.
Admitted.

(** --- INV-17 (V3): BOHB's density-ratio sampling lowers ASHA's regret at the pre-registered time T. --- *)

(** Regret at T (true top-rung BPB of the incumbent minus the table's best) of replay r,
    with BOHB on and with plain ASHA, paired by race seed. *)
Parameter bohb_regret_at_T : nat -> Q.
Parameter asha_regret_at_T : nat -> Q.
(** The replays the study ran. *)
Parameter v3_replays : list nat.

Theorem bohb_regret_not_worse :
  forall r, In r v3_replays -> bohb_regret_at_T r <= asha_regret_at_T r.
Admitted.

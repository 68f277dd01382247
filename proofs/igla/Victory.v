(** INV-7 victory_predicate_sound.

    Model of the row rules of igla_jax.victory.winning_seeds (the statistical tests that follow
    them are not modelled here): a victory row carries a config id, a seed, a step, a test BPB
    (pre-registration v2: the test half of the held-out bytes, never the validation BPB) that is
    [Some b] when present and finite and [None] when missing, NaN or infinite, and the commit sha
    of the code as written in the row (possibly abbreviated).
    Commit resolution: [resolve] maps a row's sha to [Some full] when it names exactly one commit
    of the repository (git rev-parse --verify <sha>^{commit}, igla_jax.victory.git_resolver) and
    to [None] when it names none or several. The embargo is a list of full commit ids: every
    embargo entry already resolved the same way (igla_jax.victory.resolve_embargo).
    Row rules: finite test BPB inside the plausible band [lo, hi]; step >= min_step; seed among
    the pre-registered seeds; the sha resolves to a full id; that full id is not in the embargo
    (equality of full ids, so an abbreviated sha of an embargoed commit is embargoed too:
    victory_rejects_abbreviated_embargoed, and the verdict depends on a sha only through its
    resolution: sha_okb_resolution_invariant).
    [rows] are the rows the Python counts: one config, status confirmed.
    Triple rules: exactly three rows, pairwise distinct seeds, one config, each test BPB below
    target. [victory] is the boolean predicate; it accepts a list of rows only if every row
    satisfies every rule (soundness, the registered lemma), and it accepts every list that does
    (completeness). With seeds {42, 43, 44} an accepted triple uses each of the three. *)

From Coq Require Import QArith List String Bool Arith Lia.
Import ListNotations.

Record row := { config : string; seed : nat; step : nat; test_bpb : option Q; sha : string }.

Record rules := {
  lo : Q; hi : Q; target : Q; min_step : nat;
  seeds : list nat;
  resolve : string -> option string;   (* row sha -> the full id of the one commit it names *)
  embargo : list string }.             (* full ids *)

(** --- The rules, stated as propositions. --- *)

Definition band_ok (p : rules) (r : row) : Prop :=
  exists b, test_bpb r = Some b /\ lo p <= b /\ b <= hi p.

Definition sha_ok (p : rules) (r : row) : Prop :=
  exists full, resolve p (sha r) = Some full /\ ~ In full (embargo p).

Definition row_ok (p : rules) (r : row) : Prop :=
  band_ok p r
  /\ (min_step p <= step r)%nat
  /\ In (seed r) (seeds p)
  /\ sha_ok p r.

Definition below_target (p : rules) (r : row) : Prop :=
  exists b, test_bpb r = Some b /\ b < target p.

Definition triple_ok (p : rules) (rows : list row) : Prop :=
  List.length rows = 3%nat
  /\ NoDup (map seed rows)
  /\ (forall r r', In r rows -> In r' rows -> config r = config r')
  /\ (forall r, In r rows -> row_ok p r /\ below_target p r).

(** --- The predicate, as a boolean function. --- *)

Definition band_okb (p : rules) (r : row) : bool :=
  match test_bpb r with Some b => Qle_bool (lo p) b && Qle_bool b (hi p) | None => false end.

Definition memb_nat (x : nat) (l : list nat) : bool := existsb (Nat.eqb x) l.
Definition memb_str (x : string) (l : list string) : bool := existsb (String.eqb x) l.

Definition sha_okb (p : rules) (r : row) : bool :=
  match resolve p (sha r) with Some full => negb (memb_str full (embargo p)) | None => false end.

Definition row_okb (p : rules) (r : row) : bool :=
  band_okb p r
  && Nat.leb (min_step p) (step r)
  && memb_nat (seed r) (seeds p)
  && sha_okb p r.

Definition below_targetb (p : rules) (r : row) : bool :=
  match test_bpb r with Some b => negb (Qle_bool (target p) b) | None => false end.

Fixpoint nodupb (l : list nat) : bool :=
  match l with [] => true | x :: xs => negb (memb_nat x xs) && nodupb xs end.

Definition one_configb (rows : list row) : bool :=
  match rows with
  | [] => true
  | r0 :: rest => forallb (fun r => String.eqb (config r) (config r0)) rest
  end.

Definition victory (p : rules) (rows : list row) : bool :=
  Nat.eqb (List.length rows) 3
  && nodupb (map seed rows)
  && one_configb rows
  && forallb (fun r => row_okb p r && below_targetb p r) rows.

(** --- Reflection: each boolean check means its rule. --- *)

Lemma memb_nat_spec : forall x l, memb_nat x l = true <-> In x l.
Proof.
  intros x l. unfold memb_nat. rewrite existsb_exists. split.
  - intros [y [Hy Heq]]. apply Nat.eqb_eq in Heq. subst. exact Hy.
  - intro H. exists x. split; [exact H | apply Nat.eqb_refl].
Qed.

Lemma memb_str_spec : forall x l, memb_str x l = true <-> In x l.
Proof.
  intros x l. unfold memb_str. rewrite existsb_exists. split.
  - intros [y [Hy Heq]]. apply String.eqb_eq in Heq. subst. exact Hy.
  - intro H. exists x. split; [exact H | apply String.eqb_eq; reflexivity].
Qed.

Lemma band_okb_spec : forall p r, band_okb p r = true <-> band_ok p r.
Proof.
  intros p r. unfold band_okb, band_ok. destruct (test_bpb r) as [b |].
  - rewrite andb_true_iff, !Qle_bool_iff. split.
    + intros [H1 H2]. exists b. auto.
    + intros [b' [Hb [H1 H2]]]. injection Hb as <-. auto.
  - split; [discriminate | intros [b' [Hb _]]; discriminate].
Qed.

Lemma below_targetb_spec : forall p r, below_targetb p r = true <-> below_target p r.
Proof.
  intros p r. unfold below_targetb, below_target. destruct (test_bpb r) as [b |].
  - rewrite negb_true_iff. split.
    + intro H. exists b. split; [reflexivity |]. apply Qnot_le_lt. intro Hle.
      apply Qle_bool_iff in Hle. rewrite Hle in H. discriminate.
    + intros [b' [Hb Hlt]]. injection Hb as <-.
      apply not_true_iff_false. intro Hle. apply Qle_bool_iff in Hle.
      exact (Qlt_not_le _ _ Hlt Hle).
  - split; [discriminate | intros [b' [Hb _]]; discriminate].
Qed.

Lemma sha_okb_spec : forall p r, sha_okb p r = true <-> sha_ok p r.
Proof.
  intros p r. unfold sha_okb, sha_ok. destruct (resolve p (sha r)) as [full |].
  - rewrite negb_true_iff, <- not_true_iff_false, memb_str_spec. split.
    + intro H. exists full. auto.
    + intros [f [Hf Hn]]. injection Hf as <-. exact Hn.
  - split; [discriminate | intros [f [Hf _]]; discriminate].
Qed.

Lemma row_okb_spec : forall p r, row_okb p r = true <-> row_ok p r.
Proof.
  intros p r. unfold row_okb, row_ok.
  rewrite !andb_true_iff, band_okb_spec, Nat.leb_le, memb_nat_spec, sha_okb_spec.
  tauto.
Qed.

Lemma nodupb_spec : forall l, nodupb l = true <-> NoDup l.
Proof.
  induction l as [| x xs IH]; simpl.
  - split; [intros _; constructor | reflexivity].
  - rewrite andb_true_iff, negb_true_iff, <- not_true_iff_false, memb_nat_spec, IH,
      NoDup_cons_iff.
    tauto.
Qed.

Lemma one_configb_spec :
  forall rows, one_configb rows = true <->
    (forall r r', In r rows -> In r' rows -> config r = config r').
Proof.
  intros [| r0 rest]; simpl.
  - split; [intros _ r r' [] | reflexivity].
  - rewrite forallb_forall. split.
    + intros H r r' Hr Hr'.
      assert (Hc : forall x, r0 = x \/ In x rest -> config x = config r0).
      { intros x [<- | Hx]; [reflexivity |]. apply String.eqb_eq. exact (H x Hx). }
      rewrite (Hc r Hr), (Hc r' Hr'). reflexivity.
    + intros H r Hr. apply String.eqb_eq. apply H; [right; exact Hr | left; reflexivity].
Qed.

Lemma victory_spec : forall p rows, victory p rows = true <-> triple_ok p rows.
Proof.
  intros p rows. unfold victory, triple_ok.
  rewrite !andb_true_iff, Nat.eqb_eq, nodupb_spec, one_configb_spec, forallb_forall.
  split.
  - intros [[[Hlen Hnd] Hcfg] Hall].
    split; [exact Hlen |]. split; [exact Hnd |]. split; [exact Hcfg |].
    intros r Hr. destruct (proj1 (andb_true_iff _ _) (Hall r Hr)) as [Hok Hbt].
    split; [apply row_okb_spec | apply below_targetb_spec]; assumption.
  - intros [Hlen [Hnd [Hcfg Hall]]].
    split; [split; [split |] |]; try assumption.
    intros r Hr. destruct (Hall r Hr) as [Hok Hbt].
    apply andb_true_iff. split; [apply row_okb_spec | apply below_targetb_spec]; assumption.
Qed.

(** The registered lemma: the predicate accepts only triples whose every row obeys every rule. *)
Theorem victory_predicate_sound :
  forall p rows, victory p rows = true ->
    List.length rows = 3%nat
    /\ NoDup (map seed rows)
    /\ (forall r r', In r rows -> In r' rows -> config r = config r')
    /\ (forall r, In r rows ->
          band_ok p r /\ (min_step p <= step r)%nat /\ In (seed r) (seeds p)
          /\ (exists full, resolve p (sha r) = Some full /\ ~ In full (embargo p))
          /\ below_target p r).
Proof.
  intros p rows H. apply victory_spec in H. destruct H as [Hlen [Hnd [Hcfg Hall]]].
  split; [exact Hlen |]. split; [exact Hnd |]. split; [exact Hcfg |].
  intros r Hr. destruct (Hall r Hr) as [Hok Hbt]. unfold row_ok, sha_ok in Hok. tauto.
Qed.

Theorem victory_predicate_complete :
  forall p rows, triple_ok p rows -> victory p rows = true.
Proof. intros p rows H. apply victory_spec. exact H. Qed.

(** With the pre-registered seeds {42, 43, 44}, an accepted triple uses each of them once. *)
Corollary victory_uses_every_seed :
  forall p rows, seeds p = [42; 43; 44]%nat -> victory p rows = true ->
    forall s, In s [42; 43; 44]%nat -> In s (map seed rows).
Proof.
  intros p rows Hs H s Hin.
  destruct (victory_predicate_sound p rows H) as [Hlen [Hnd [_ Hall]]].
  assert (Hincl : incl (map seed rows) [42; 43; 44]%nat).
  { intros x Hx. apply in_map_iff in Hx. destruct Hx as [r [<- Hr]].
    rewrite <- Hs. apply (Hall r Hr). }
  apply (NoDup_length_incl Hnd (l' := [42; 43; 44]%nat)); [| exact Hincl | exact Hin].
  rewrite map_length, Hlen. simpl. lia.
Qed.

(** The sha rule sees a row's sha only through its resolution: two shas naming the same commit
    (e.g. the full id and an abbreviation of it) get the same verdict. *)
Lemma sha_okb_resolution_invariant :
  forall p r r', resolve p (sha r) = resolve p (sha r') -> sha_okb p r = sha_okb p r'.
Proof. intros p r r' H. unfold sha_okb. rewrite H. reflexivity. Qed.

(** No abbreviation bypass: a row whose sha resolves to an embargoed full id, however it is
    written, makes the predicate reject the whole list. *)
Corollary victory_rejects_abbreviated_embargoed :
  forall p rows r full, In r rows -> resolve p (sha r) = Some full -> In full (embargo p) ->
    victory p rows = false.
Proof.
  intros p rows r full Hr Hres Hemb.
  apply not_true_iff_false. intro H.
  destruct (victory_predicate_sound p rows H) as [_ [_ [_ Hall]]].
  destruct (Hall r Hr) as [_ [_ [_ [[f [Hf Hn]] _]]]].
  rewrite Hres in Hf. injection Hf as <-. exact (Hn Hemb).
Qed.

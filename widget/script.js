/*
 * mailsync: a Kommo widget that maps pipeline stages to MailerLite groups or Mailchimp tags.
 *
 * Areas: settings (the settings modal), lcard / ccard (the right-hand card panel).
 * Every backend call goes through self.$authorizedAjax to BACKEND_URL (classes/config.js).
 *
 * Stable test hooks: every element below carries data-ms="<hook>". On system controls the hook
 * sits on the element that has the control's `name`, holds the value and fires `change`: for
 * Kommo's select that is its hidden input (choose an option through the visible part of the same
 * `.control--select`, e.g. `.control--select:has([data-ms=audience]) select` in the sandbox).
 * A lead card reads its main contact from same-origin `GET /api/v4/leads/{id}?with=contacts`.
 *   Settings modal
 *     settings              root of our part of the modal
 *     settings-loading      "Loading…" line while the modal's data arrives
 *     banner                needs_reauth / disconnected / key_rejected / not installed
 *     provider-kind         select: mailerlite | mailchimp
 *     api-key               password input (empty once saved; placeholder says a key is saved)
 *     provider-where        where to find the key at the vendor
 *     connect               button: check the key live and connect
 *     disconnect            button (only while connected)
 *     provider-status       "Connected to …" / "Not connected yet." / "Checking the key…"
 *     provider-error        the vendor's refusal in plain words
 *     audience              select of Mailchimp audiences (Mailchimp only)
 *     audience-status       result of choosing an audience
 *     suggest               button: "Suggest a mapping"
 *     mapping-note          hint above the table (what is missing, or "Suggested…")
 *     mapping-table         all pipelines' tables
 *     stage-row             one <tr> per stage, with data-pipeline-id and data-status-id
 *     stage-action          select in a row: "" | segment | remove | unsubscribe
 *     stage-segment         select in a row (action "segment"): segment id | "__new__"
 *     new-segment-name      input shown after choosing "Create new…"
 *     new-segment-add       button: keep that name (the segment is created on save)
 *     new-segment-cancel    button
 *     consent-field         select: "" | Kommo contact field id
 *     no-consent            select: skip | pending
 *     new-contact-segment   select: "" | segment id
 *     email-choice          select: first | WORK | PRIV
 *     all-lead-contacts     checkbox
 *     notes-on-sync         checkbox
 *     field-map-row         one row of the field map, with data-index
 *     field-map-kommo       select in a field-map row
 *     field-map-esp         input in a field-map row
 *     field-map-remove      button in a field-map row
 *     field-map-add         button
 *     backfill              root of "Sync existing leads" (only with a working platform and a saved mapping)
 *     backfill-preview      button: count what a sync would do (a dry run: nothing is sent)
 *     backfill-summary      the preview in plain words (data-total, data-new, data-existing; one <li>
 *                           per line with data-kind new | existing | duplicates | skipped | errors)
 *     backfill-choice       radio inputs, value subscribed | unconfirmed | skip (after a preview)
 *     backfill-warning      what "Sync now" will do with that choice, said before the button
 *     backfill-start        button: "Sync now" (disabled until a choice is made)
 *     backfill-progress     bar and "N leads synced", data-state running | done | failed, data-done
 *     backfill-result       the finished sync in plain words
 *     backfill-error        why a preview or a sync could not start or stopped (409: already running)
 *     activity-refresh      button
 *     activity-list         <ul> of activity rows
 *     activity-row          one <li>, with data-outcome ok | skipped | failed
 *     save-error            why the last save failed (also shown by Kommo's notification)
 *   Card panel (lcard / ccard)
 *     card                  root of the panel
 *     card-email, card-status (with data-status = raw ESP status | refused | none),
 *     card-segments, card-last-sync, card-last-error, card-message
 *     sync-now              button: resync and wait for the result
 */
define(['jquery', './classes/config.js', './classes/ui.js', './classes/api.js', './classes/settings.js',
  './classes/card.js'], function ($, config, Ui, Api, Settings, Card) {
  'use strict';

  return function () {
    var self = this;
    var ui = new Ui(this);
    var api = new Api(this, config.BACKEND_URL, ui);
    var settings = null;
    var card = null;

    // Kommo does not load a widget's style sheet; the version defeats stale caches.
    function loadStyle() {
      var params = self.get_settings() || {};
      var id = 'mailsync-style';
      if (!document.getElementById(id) && params.path) {
        $('<link rel="stylesheet" type="text/css">').attr({id: id,
          href: params.path + '/style.css?v=' + encodeURIComponent(params.version || '1')}).appendTo('head');
      }
    }

    function inCard() {
      var area = (self.system() || {}).area;
      return area === 'lcard' || area === 'ccard';
    }

    this.callbacks = {
      render: function () {
        loadStyle();
        if (inCard()) {
          card = new Card(self, ui, api);
          card.render();
        }
        return true;
      },
      init: function () { return true; },
      bind_actions: function () { return true; },
      settings: function ($modal) {
        loadStyle();
        if (settings) {
          settings.destroy();
        }
        settings = new Settings(self, ui, api);
        settings.open($modal);
        return true;
      },
      onSave: function (evt) {
        return settings ? settings.save(evt) : Promise.resolve(true);
      },
      destroy: function () {
        if (card) {
          card.destroy();
          card = null;
        }
        if (settings) {
          settings.destroy();
          settings = null;
        }
      }
    };
    return this;
  };
});

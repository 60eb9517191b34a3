// Step 4 of the settings modal: consent, which email, notes, new-contact segment and field map.
define(['jquery'], function ($) {
  'use strict';

  function Options(ui, mapping, onChange) {
    this.ui = ui;
    this.mapping = mapping;   // its segments (existing and pending) feed the new-contact picker
    this.onChange = onChange;
    this.fields = [];
    this.kind = 'mailerlite';
    this.values = {};
    this.fieldMap = [];
    this.$el = $('<div class="mailsync__options">');
    this.bind();
  }

  Options.prototype.load = function (options, fields, kind) {
    this.values = $.extend({}, options || {});
    this.fieldMap = (this.values.field_map || []).map(function (e) { return $.extend({}, e); });
    this.fields = fields || [];
    this.kind = kind || 'mailerlite';
    this.render();
  };

  Options.prototype.line = function (label, $control) {
    return $('<div class="mailsync__field">').append(
      $('<div class="mailsync__label">').text(label), $('<div class="mailsync__value">').append($control));
  };

  Options.prototype.render = function () {
    var ui = this.ui;
    var v = this.values;
    var fieldItems = [{id: '', option: ui.t('options.consent_none')}].concat(this.fields.map(function (f) {
      return {id: String(f.id), option: f.name};
    }));
    var segmentItems = [{id: '', option: ui.t('common.none')}].concat(this.mapping.segments.map(function (s) {
      return {id: s.id, option: s.pending ? ui.t('mapping.pending', {name: s.name}) : s.name};
    }));
    this.$el.empty().append(
      this.line(ui.t('options.consent_field'), ui.select('ms_consent_field', fieldItems, v.consent_field_id, 'consent-field')),
      this.line(ui.t('options.no_consent'), ui.select('ms_no_consent', [
        {id: 'skip', option: ui.t('options.no_consent_skip')},
        {id: 'pending', option: ui.t('options.no_consent_pending')}], v.no_consent || 'skip', 'no-consent')),
      this.line(ui.t('options.new_contact_segment'), ui.select('ms_new_contact_segment', segmentItems,
        v.new_contact_segment_id, 'new-contact-segment')),
      this.line(ui.t('options.email_choice'), ui.select('ms_email_choice', [
        {id: 'first', option: ui.t('options.email_first')},
        {id: 'WORK', option: ui.t('options.email_work')},
        {id: 'PRIV', option: ui.t('options.email_priv')}], v.email_choice || 'first', 'email-choice')),
      $('<div class="mailsync__field mailsync__field_flags">').append(
        ui.checkbox('ms_all_lead_contacts', v.all_lead_contacts, ui.t('options.all_lead_contacts'), 'all-lead-contacts'),
        ui.checkbox('ms_notes_on_sync', v.notes_on_sync, ui.t('options.notes_on_sync'), 'notes-on-sync')),
      this.renderFieldMap());
  };

  Options.prototype.renderFieldMap = function () {
    var self = this;
    var ui = this.ui;
    var items = [{id: '', option: ui.t('options.choose_field')}].concat(this.fields.map(function (f) {
      return {id: String(f.id), option: f.name};
    }));
    var $box = $('<div class="mailsync__fieldmap">').append(
      $('<div class="mailsync__label">').text(ui.t('options.field_map')),
      $('<p class="mailsync__hint">').text(ui.t('options.field_map_hint')));
    this.fieldMap.forEach(function (entry, n) {
      $box.append($('<div class="mailsync__inline" data-ms="field-map-row">').attr('data-index', n).append(
        ui.select('ms_fm_kommo_' + n, items, entry.kommo_field_id, 'field-map-kommo'),
        ui.input('ms_fm_esp_' + n, entry.esp_field, ui.t('options.esp_field_' + self.kind), 'field-map-esp'),
        ui.button('ms_fm_remove_' + n, '×', 'field-map-remove', 'mailsync__button_plain')));
    });
    return $box.append(ui.button('ms_fm_add', ui.t('options.add_field'), 'field-map-add', 'mailsync__button_plain'));
  };

  Options.prototype.bind = function () {
    var self = this;
    this.$el.on('change input', '[data-ms]', function () { self.onChange(); });
    this.$el.on('click', '[data-ms="field-map-add"]', function (e) {
      e.preventDefault();
      self.readFieldMap();
      self.fieldMap.push({kommo_field_id: '', esp_field: ''});
      self.keepValues();
      self.onChange();
    });
    this.$el.on('click', '[data-ms="field-map-remove"]', function (e) {
      e.preventDefault();
      self.readFieldMap();
      self.fieldMap.splice(Number($(this).closest('[data-ms="field-map-row"]').attr('data-index')), 1);
      self.keepValues();
      self.onChange();
    });
  };

  // Re-render without losing what the admin already picked.
  Options.prototype.keepValues = function () {
    var fieldMap = this.fieldMap;
    this.values = this.read(true);
    this.fieldMap = fieldMap;
    this.render();
  };

  Options.prototype.readFieldMap = function () {
    this.fieldMap = this.$el.find('[data-ms="field-map-row"]').map(function () {
      var $row = $(this);
      return {kommo_field_id: $row.find('[data-ms="field-map-kommo"]').val() || '',
        esp_field: String($row.find('[data-ms="field-map-esp"]').val() || '').trim()};
    }).get();
  };

  // Options as the backend wants them; half-filled field-map rows are left out.
  Options.prototype.read = function (raw) {
    var $el = this.$el;
    function val(hook) { return $el.find('[data-ms="' + hook + '"]').val() || ''; }
    function flag(hook) { return $el.find('[data-ms="' + hook + '"]').prop('checked') === true; }
    this.readFieldMap();
    var consent = val('consent-field');
    // Options this screen does not show (e.g. on_contact_delete) keep their stored values.
    return $.extend({}, this.values, {
      consent_field_id: consent ? Number(consent) : null,
      no_consent: val('no-consent') || 'skip',
      new_contact_segment_id: val('new-contact-segment') || null,
      email_choice: val('email-choice') || 'first',
      all_lead_contacts: flag('all-lead-contacts'),
      notes_on_sync: flag('notes-on-sync'),
      field_map: raw ? this.fieldMap : this.fieldMap.filter(function (e) {
        return e.kommo_field_id && e.esp_field;
      }).map(function (e) {
        return {kommo_field_id: Number(e.kommo_field_id), esp_field: e.esp_field};
      })
    });
  };

  return Options;
});
